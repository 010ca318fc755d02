#!/usr/bin/env bash
# Builds fuzz/corpus/<target>/ from the real vectors in testdata/ (plus a few small seeds written here and, when a
# sealpack binary is given, seeds the crate itself produces). Idempotent: re-running only adds files.
#
#   fuzz/seed.sh [path/to/sealpack]
#
# Needs python3 and gzip. Seed files are named by content hash, so nothing is duplicated.
set -euo pipefail
cd "$(dirname "$0")/.."
TD=testdata
OUT=fuzz/corpus
SEALPACK=${1:-}
mkdir -p "$OUT"

python3 - "$TD" "$OUT" <<'PY'
import base64, glob, gzip, hashlib, json, os, sys

td, out = sys.argv[1], sys.argv[2]

def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

def read(p):
    with open(p, "rb") as f:
        return f.read()

def b64d(s):
    s = s.replace("-", "+").replace("_", "/")
    return base64.b64decode(s + "=" * (-len(s) % 4))

# ---- DSSE envelopes from every real source, and the statements inside them
envelopes = [read(f"{td}/dsse/spec-protocol-md/envelope.json")]
envelopes += [read(p) for p in sorted(glob.glob(f"{td}/attestations/kyverno-legacy-cosign/*.json"))]
for p in sorted(glob.glob(f"{td}/attestations/gcb/*.json")):
    v = json.loads(read(p))
    envelopes.append(json.dumps(v["provenance_summary"]["provenance"][0]["envelope"]).encode())
for p in sorted(glob.glob(f"{td}/attestations/slsa-github-generator/*/*.slsa")):
    for line in read(p).decode().splitlines():
        if line.strip():
            envelopes.append(json.dumps(json.loads(line)["dsseEnvelope"]).encode())
statements = []
for e in envelopes:
    put("dsse", e)
    v = json.loads(e)
    payload = b64d(v["payload"])
    statements.append(payload)
    put("intoto", payload)

# ---- in-toto: the GCB describe output embeds a v1 statement; upgrade the v0.1 ones to v1 so parse goes deep
for p in sorted(glob.glob(f"{td}/attestations/gcb/*.json")):
    v = json.loads(read(p))
    st = v["provenance_summary"]["provenance"][0]["build"]["inTotoSlsaProvenanceV1"]
    put("intoto", json.dumps(st))
for s in statements:
    try:
        v = json.loads(s)
    except ValueError:
        continue
    if isinstance(v, dict) and "predicate" in v:
        v["_type"] = "https://in-toto.io/Statement/v1"
        put("intoto", json.dumps(v, separators=(",", ":")))

subject = [{"name": "site", "digest": {"sha256": "7e9b6e7ba2842c91cf49f3e214d04a7a496f8214356f41d81a6e6dcad11f11e3"}}]
def statement(ptype, predicate):
    return json.dumps({"_type": "https://in-toto.io/Statement/v1", "subject": subject,
                       "predicateType": ptype, "predicate": predicate}, separators=(",", ":"))
for p in sorted(glob.glob(f"{td}/cyclonedx/*/*.json")):
    bom = json.loads(read(p))
    put("intoto", statement("https://cyclonedx.org/bom", bom))
put("intoto", statement("https://github.com/sealpack/sealpack/revocation/v1",
    {"digest": "sha256:7e9b6e7ba2842c91cf49f3e214d04a7a496f8214356f41d81a6e6dcad11f11e3",
     "reason": "CVE-2026-0001", "revokedAt": "2026-11-01T00:00:00Z"}))
put("intoto", statement("https://spdx.dev/Document",
    {"spdxVersion": "SPDX-2.3", "name": "site", "packages": [{"name": "site"}], "files": [{"fileName": "./index.html"}]}))
for shape in [
    {"Results": [{"Vulnerabilities": [{"Severity": "HIGH", "VulnerabilityID": "CVE-2026-1"}]}]},
    {"matches": [{"vulnerability": {"severity": "Medium", "id": "GHSA-x"}}]},
    {"vulnerabilities": [{"severity": "low", "id": "CVE-2026-2"}]},
]:
    put("intoto", statement("https://cosign.sigstore.dev/attestation/vuln/v1",
        {"scanner": {"uri": "pkg:github/aquasecurity/trivy", "version": "0.50.0", "result": shape},
         "metadata": {"scanStartedOn": "2026-09-01T00:00:00Z", "scanFinishedOn": "2026-09-01T00:01:00Z"}}))

# ---- simple signing payloads and signature annotations
for p in sorted(glob.glob(f"{td}/cosign-signatures/*/*/payload.json")) + \
         sorted(glob.glob(f"{td}/cosign-signatures/*/blobs/*.json")):
    put("simplesigning", read(p))
for p in sorted(glob.glob(f"{td}/cosign-signatures/*/*/payload.sig")):
    put("simplesigning", read(p).strip())

# ---- manifests: the cosign signature manifests (first byte = which Content-Type the store claims)
refs = set()
for p in sorted(glob.glob(f"{td}/cosign-signatures/*/manifests/*.json")):
    m = read(p)
    for sel in (0, 1, 3):
        put("manifest", bytes([sel]) + m)
    for layer in json.loads(m).get("layers", []):
        for k, val in (layer.get("annotations") or {}).items():
            if k == "dev.cosignproject.cosign/signature":
                put("simplesigning", val)
idx = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
    {"mediaType": "application/vnd.oci.image.manifest.v1+json",
     "digest": "sha256:7e9b6e7ba2842c91cf49f3e214d04a7a496f8214356f41d81a6e6dcad11f11e3", "size": 500,
     "annotations": {"org.opencontainers.image.ref.name": "v1"}, "platform": {"architecture": "amd64", "os": "linux"}}]}
put("manifest", b"\x02" + json.dumps(idx).encode())
put("manifest", b"\x04" + json.dumps(dict(idx, mediaType="application/vnd.docker.distribution.manifest.list.v2+json")).encode())

# ---- references: every docker-reference in the real payloads, plus the grammar's corners
for p in sorted(glob.glob(f"{td}/cosign-signatures/*/*/payload.json")) + \
         sorted(glob.glob(f"{td}/cosign-signatures/*/blobs/*.json")):
    v = json.loads(read(p))
    ref = v["critical"]["identity"]["docker-reference"]
    dig = v["critical"]["image"]["docker-manifest-digest"]
    for r in (ref, f"{ref}@{dig}", f"{ref}:v1", dig):
        put("reference", r)
for r in ["alpine", "library/alpine:3.20", "docker.io/library/alpine", "index.docker.io/team/app:latest",
          "localhost:5000/team/app:v1", "127.0.0.1:5000/a/b/c", "[::1]:5000/app", "registry.example.com/team/app",
          "ghcr.io/acme/app:v1.2.3@sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03",
          "oci:./layout", "oci:/tmp/layout:v1", "oci:layout@sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03",
          "a__b/c--d.e_f", "my-registry.local:443/x/y:tag_1-2.3"]:
    put("reference", r)

# ---- keys: every PEM in testdata, and the DER inside the public ones
for p in sorted(set(glob.glob(f"{td}/**/*.pub", recursive=True) + glob.glob(f"{td}/**/*.key", recursive=True))):
    data = read(p)
    put("keys", data)
    text = data.decode("ascii", "replace")
    if "BEGIN PUBLIC KEY" in text:
        body = "".join(l for l in text.splitlines() if l and not l.startswith("-----"))
        put("keys", base64.b64decode(body))

# ---- policy files, and GLOB\nTEXT seeds for the scope syntax
for p in sorted(glob.glob(f"{td}/policy/*.toml")):
    put("policy", read(p))
put("policy", 'version = 1\n[defaults]\ndeny_unmatched = false\n[[keys]]\nid = "ci"\npath = "keys/ci.pub"\n'
              'roles = ["builder"]\nnot_before = "2026-01-01T00:00:00Z"\n[[rules]]\nscope = "oci:*"\n'
              'signatures = { threshold = 1, roles = ["builder"] }\n')
for g in ["registry.example.com/team/*\nregistry.example.com/team/app", "**\nanything/at/all",
          "localhost:5000/?/app\nlocalhost:5000/a/app", "oci:*\noci:./layout", "7d", "24h", "30m", "45s"]:
    put("policy", g)

# ---- archives: the tar fixtures as they are (gzip) and unpacked (plain tar)
for p in sorted(glob.glob(f"{td}/archives/*.tar.gz")):
    data = read(p)
    put("archive", data)
    put("archive", gzip.decompress(data))

# ---- registry WWW-Authenticate challenges (distribution, Docker Hub, GHCR, Harbor shapes)
for h in ['Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"',
          'Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:acme/app:pull"',
          'Basic realm="Registry Realm"', 'basic', 'Bearer realm=https://127.0.0.1:5001/token, service=reg',
          'BEARER realm="https://r.example/t,with,commas", error="invalid_token"']:
    put("registry_auth", h)
PY

# ---- seeds made by the crate itself: a folder layer and the manifests of a pushed artifact
if [ -n "$SEALPACK" ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    "$SEALPACK" push "$TD/site" --to "oci:$tmp/layout:v1" >/dev/null 2>&1
    for blob in "$tmp"/layout/blobs/sha256/*; do
        if head -c 2 "$blob" | od -An -tx1 | grep -q '1f 8b'; then
            cp "$blob" "$OUT/archive/$(basename "$blob")"
            gzip -dc "$blob" > "$OUT/archive/$(basename "$blob").tar"
        elif head -c 1 "$blob" | grep -q '{'; then
            { printf '\000'; cat "$blob"; } > "$OUT/manifest/$(basename "$blob")"
        fi
    done
    { printf '\002'; cat "$tmp/layout/index.json"; } > "$OUT/manifest/index.json"
fi

for d in "$OUT"/*/; do
    printf '%-14s %4d seeds\n' "$(basename "$d")" "$(find "$d" -type f | wc -l)"
done
