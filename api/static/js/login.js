// The sign-in page (served at / in accounts mode to whoever is not signed in): name and password to
// POST /api/v1/login, which sets the session cookie; then the studio itself loads.

import { api } from './api.js';

const form = document.getElementById('login');
const error = document.getElementById('login-error');
form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  error.textContent = '';
  const button = form.querySelector('button');
  button.disabled = true;
  try {
    await api('login', { method: 'POST', body: { name: form.elements.name.value.trim(), password: form.elements.password.value } });
    location.reload();
  } catch (e) {
    const wait = e.status === 429 ? ' (wait before trying again)' : '';
    error.textContent = `${e.message}${wait}`;
    form.elements.password.select();
  } finally {
    button.disabled = false;
  }
});
