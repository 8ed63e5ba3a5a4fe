// The sign-in page: shows why the last attempt was refused, from a fixed list (nothing typed is echoed).
"use strict";
const REASONS = {
  token: "That token is not valid: it is unknown, revoked or mistyped.",
  role: "That token may not sign in here: the explorer needs an auditor or admin token.",
  link: "That sign-in link is not valid for this server (it changes each time provault up starts).",
  expired: "Your session has ended: sign in again.",
};
document.addEventListener("DOMContentLoaded", () => {
  const code = new URLSearchParams(location.search).get("error");
  const box = document.getElementById("login-error");
  if (code) {
    box.textContent = REASONS[code] || "Sign-in failed.";
    box.hidden = false;
  }
  // A shared link's view (#id=…) survives the sign-in: the explorer reopens it once.
  if (location.hash.length > 1) sessionStorage.setItem("provault.explorer.next", location.hash);
});
