'use strict';
// Sign-in: the token goes once, in an Authorization header, to
// POST /v1/ui/sessions, which answers with an HttpOnly session cookie.
// The token is never stored, nor put in a URL.
document.getElementById('sign-in').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const input = document.getElementById('token');
  const error = document.getElementById('sign-in-error');
  error.hidden = true;
  const token = input.value.trim();
  input.value = '';
  try {
    const res = await fetch('/v1/ui/sessions', {
      method: 'POST', credentials: 'same-origin',
      headers: { 'Authorization': 'Bearer ' + token, 'Accept': 'application/json' },
    });
    if (res.status === 201) {
      location.assign('/ui/environments');
      return;
    }
    let detail = 'sign-in failed (' + res.status + ')';
    try { detail = (await res.json()).detail || detail; } catch (_) { /* not JSON */ }
    error.textContent = detail;
  } catch (e) {
    error.textContent = 'the server cannot be reached: ' + e.message;
  }
  error.hidden = false;
  input.focus();
});
