document.addEventListener("DOMContentLoaded", () => {
  const p = document.createElement("p");
  p.textContent = "Rendered at " + new Date().toISOString();
  document.body.appendChild(p);
});
