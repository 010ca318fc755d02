#!/bin/sh
# Regenerates the tar fixtures of src/artifact/archive.rs tests (GNU tar 1.34, Python 3.11).
# Output is deterministic: fixed mtimes, owners and order.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

# 1. GNU tar, GNU format: a 150+ byte path (GNU long name), a symlink whose target is over
#    100 bytes (GNU long link), an executable, an empty directory.
long=$(printf 'd%.0s' $(seq 1 120))
mkdir -p "gnu/$long/sub" gnu/empty
printf 'hello\n' > "gnu/$long/sub/file.txt"
printf '#!/bin/sh\necho hi\n' > gnu/run.sh
chmod 755 gnu/run.sh
chmod 644 "gnu/$long/sub/file.txt"
ln -s "$long/sub/file.txt" gnu/link
tar --format=gnu --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
    -czf "$here/gnutar-gnu-longnames.tar.gz" gnu

# 2. GNU tar, sparse file in the old GNU format ('S' entries) and in the PAX 1.0 format
#    (GNU.sparse.* records): both must be refused.
mkdir sparse
printf 'data' > sparse/holes
truncate -s 4194304 sparse/holes
printf 'end' >> sparse/holes
tar --format=gnu --sparse --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
    -czf "$here/gnutar-sparse.tar.gz" sparse
tar --format=pax --sparse --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
    --pax-option=delete=atime,delete=ctime \
    -cf pax-sparse.tar sparse
# GNU tar names the data entry "sparse/GNUSparseFile.<its pid>/holes": pin the pid to 0
# (and fix the header checksum) so that the fixture is reproducible.
python3 - pax-sparse.tar "$here/gnutar-pax-sparse.tar.gz" <<'PY'
import gzip, re, sys
data = bytearray(open(sys.argv[1], "rb").read())
for off in range(0, len(data), 512):
    name = bytes(data[off:off + 100])
    if b"GNUSparseFile." in name and data[off + 257:off + 262] == b"ustar":
        fixed = re.sub(rb"GNUSparseFile\.\d+", b"GNUSparseFile.0", name.rstrip(b"\0"))
        data[off:off + 100] = fixed.ljust(100, b"\0")
        data[off + 148:off + 156] = b" " * 8
        data[off + 148:off + 156] = b"%06o\0 " % sum(data[off:off + 512])
with open(sys.argv[2], "wb") as raw:
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(data)
PY

# 3. Python tarfile, PAX format: a global header (as `git archive` writes), non-ASCII names
#    (PAX path records), a 180-byte name, a symlink and a hard link.
python3 - "$here/python-pax.tar.gz" <<'PY'
import io, sys, tarfile
out = sys.argv[1]
def info(name, typ=tarfile.REGTYPE, data=b"", mode=0o644, link=""):
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.mtime, ti.linkname = typ, mode, 0, link
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.size = len(data) if typ == tarfile.REGTYPE else 0
    return ti, (io.BytesIO(data) if typ == tarfile.REGTYPE else None)
with open(out, "wb") as raw:
    import gzip
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT,
                          pax_headers={"comment": "0123456789abcdef0123456789abcdef01234567"}) as t:
            for ti, f in [
                info("py/", tarfile.DIRTYPE, mode=0o755),
                info("py/caf\u00e9.txt", data=b"NFC name\n"),
                info("py/\u65e5\u672c.txt", data=b"CJK name\n"),
                info("py/" + "n" * 180, data=b"long name\n"),
                info("py/link", tarfile.SYMTYPE, link="caf\u00e9.txt"),
                info("py/hard", tarfile.LNKTYPE, link="py/caf\u00e9.txt"),
            ]:
                t.addfile(ti, f)
PY
ls -l "$here"
