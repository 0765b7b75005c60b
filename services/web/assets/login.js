// The login page: POST /api/login, then on to the dashboard.
'use strict';

document.getElementById('login').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const error = document.getElementById('error');
  const button = document.getElementById('submit');
  const password = document.getElementById('password');
  error.hidden = true;
  button.disabled = true;
  try {
    const resp = await fetch('/api/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ password: password.value }),
      credentials: 'same-origin',
    });
    if (resp.ok) {
      location.replace('/');
      return;
    }
    let message = 'Login failed (' + resp.status + ')';
    try { message = (await resp.json()).error || message; } catch (e) { /* keep the status */ }
    if (resp.status === 429 && resp.headers.get('Retry-After'))
      message += ' (wait ' + resp.headers.get('Retry-After') + ' s)';
    error.textContent = message;
    error.hidden = false;
    password.select();
  } catch (e) {
    error.textContent = 'The dashboard cannot be reached: ' + e.message;
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
});
