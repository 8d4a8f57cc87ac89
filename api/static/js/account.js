// Account area, #/account (accounts mode only): one's personal API tokens (made, listed, revoked; the secret
// is shown once) and password; for admins the users (create, role, reset password, disable) and the
// audit log. mountUser() puts the signed-in user and a sign-out button in the top bar.

import { api } from './api.js';
import { badge, confirmDialog, fieldRow, fill, formatShortTime, h, promptDialog, showError, tabView, toast } from './ui.js';
import { setQuery } from './router.js';

const ROLES = ['admin', 'member', 'viewer'];

async function signOut(everywhere = false) {
  try { await api('logout', { method: 'POST', body: { everywhere } }); } catch (e) { showError(e, 'Sign out'); }
  location.reload();
}

export function mountUser(me) {
  const status = document.getElementById('status');
  status.after(h('span.user', { id: 'user' }, h('span', `${me.user.name} (${me.user.role})`),
    h('button', { type: 'button', onclick: () => signOut() }, 'Sign out')));
  document.addEventListener('odeo:unauthorized', () => location.reload());   // the session ended
}

// a small form in a row: fields [[label, input]], a submit button and an async action
function rowForm(fields, label, action) {
  const submit = h('button.primary', { type: 'submit' }, label);
  const form = h('form.row', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      submit.disabled = true;
      try { await action(form); form.reset(); } catch (e) { showError(e, label); } finally { submit.disabled = false; }
    },
  }, fields.map(([l, input]) => fieldRow(l, input)), submit);
  return form;
}

async function tokensTab(panel, scope) {
  const list = h('tbody');
  const shown = h('div');
  const draw = async () => {
    const { tokens } = await api('tokens', { signal: scope.signal });
    fill(list, tokens.length ? tokens.map((t) => h('tr', { dataset: { token: t.id } }, h('td', h('code', t.id)), h('td', t.name),
      h('td.small', formatShortTime(t.created_at)),
      h('td.actions', h('button.danger', { type: 'button', onclick: () => revoke(t) }, 'Revoke'))))
      : h('tr', h('td.muted', { colSpan: 4 }, 'No token yet.')));
  };
  const revoke = async (t) => {
    if (!await confirmDialog(`Revoke token ${t.name} (${t.id})? Scripts using it stop working.`, { confirm: 'Revoke', danger: true })) return;
    try { await api(`tokens/${encodeURIComponent(t.id)}`, { method: 'DELETE' }); toast('Token revoked'); draw(); } catch (e) { showError(e, 'Revoke'); }
  };
  const create = rowForm([['Name (what it is for)', h('input', { name: 'name', required: true, placeholder: 'nightly script' })]], 'Create token',
    async (form) => {
      const made = await api('tokens', { method: 'POST', body: { name: form.elements.name.value } });
      fill(shown, h('div.card', h('p', 'Copy this token now; it is not shown again:'), h('code.token-secret', made.secret),
        h('p.muted.small', 'Send it as Authorization: Bearer <token>.')));
      draw();
    });
  panel.append(h('section.card', h('h2', 'Personal API tokens'), create, shown,
    h('table.compact.tokens-table', h('thead', h('tr', ['Id', 'Name', 'Created', ''].map((x) => h('th', x)))), list)));
  const pw = rowForm([['Current password', h('input', { name: 'old', type: 'password', required: true, autocomplete: 'current-password' })],
    ['New password', h('input', { name: 'new', type: 'password', required: true, minLength: 8, autocomplete: 'new-password' })]], 'Change password',
  async (form) => {
    await api('account/password', { method: 'POST', body: { old_password: form.elements.old.value, password: form.elements.new.value } });
    toast('Password changed; other sessions ended');
  });
  panel.append(h('section.card', h('h2', 'Password'), pw,
    h('button', { type: 'button', onclick: () => signOut(true) }, 'Sign out everywhere')));
  await draw();
}

async function usersTab(panel, scope) {
  const list = h('tbody');
  const change = async (u, body, what) => {
    try { await api(`users/${encodeURIComponent(u.name)}`, { method: 'PATCH', body }); toast(`${u.name}: ${what}`); draw(); } catch (e) { showError(e, u.name); }
  };
  const reset = async (u) => {
    const password = await promptDialog(`New password for ${u.name} (ends their sessions)`, { confirm: 'Set password', label: 'New password' });
    if (password) change(u, { password }, 'password reset');
  };
  const draw = async () => {
    const { users } = await api('users', { signal: scope.signal });
    fill(list, users.map((u) => {
      const role = h('select', { 'aria-label': `role of ${u.name}`, onchange: () => change(u, { role: role.value }, `now ${role.value}`) },
        ROLES.map((r) => h('option', { value: r, selected: r === u.role ? 'selected' : false }, r)));
      return h('tr', { dataset: { user: u.name } }, h('td', h('strong', u.name)), h('td', role),
        h('td', u.disabled ? badge('disabled') : badge('active')), h('td.small', formatShortTime(u.created_at)),
        h('td.actions', h('button', { type: 'button', onclick: () => reset(u) }, 'Reset password'),
          h('button', { type: 'button', onclick: () => change(u, { disabled: !u.disabled }, u.disabled ? 'enabled' : 'disabled') },
            u.disabled ? 'Enable' : 'Disable')));
    }));
  };
  const create = rowForm([['Name', h('input', { name: 'name', required: true })],
    ['Password', h('input', { name: 'password', type: 'password', required: true, minLength: 8, autocomplete: 'new-password' })],
    ['Role', h('select', { name: 'role' }, ROLES.map((r) => h('option', { value: r, selected: r === 'member' ? 'selected' : false }, r)))]], 'Create user',
  async (form) => {
    const u = await api('users', { method: 'POST', body: { name: form.elements.name.value.trim(), password: form.elements.password.value, role: form.elements.role.value } });
    toast(`${u.name} created (${u.role})`);
    draw();
  });
  panel.append(h('section.card', h('h2', 'Users'), create,
    h('table.compact.users-table', h('thead', h('tr', ['Name', 'Role', 'State', 'Created', ''].map((x) => h('th', x)))), list)));
  await draw();
}

async function auditTab(panel, scope) {
  const list = h('tbody');
  panel.append(h('section.card', h('h2', 'Audit log'), h('p.muted.small', 'Newest first: every change and download, refused ones too.'),
    h('table.compact.audit-table', h('thead', h('tr', ['Time', 'User', 'Address', 'Action', 'Object', 'Status'].map((x) => h('th', x)))), list)));
  scope.poll(async () => {
    const { lines } = await api('audit', { query: { limit: 300 }, signal: scope.signal });
    fill(list, lines.map((l) => h('tr', h('td.small', formatShortTime(l.time)), h('td', l.user || '–'), h('td.small', l.address),
      h('td', l.action), h('td.small', h('code', (l.object && (l.object.created || l.object.path)) || '')), h('td', String(l.status ?? '')))));
  }, 5000);
}

export function accountArea(me) {
  const admin = me.user.role === 'admin';
  const tabs = [{ id: 'tokens', title: 'Tokens', render: tokensTab }];
  if (admin) tabs.push({ id: 'users', title: 'Users', render: usersTab }, { id: 'audit', title: 'Audit log', render: auditTab });
  return {
    id: 'account',
    title: admin ? 'Account & users' : 'Account',
    async render(container, route) {
      const view = tabView(tabs, { label: 'Account', onShow: (id) => setQuery({ tab: id }) });
      container.classList.add('account-area');
      container.append(h('div.area-header', h('h1', 'Account'), h('span.muted', `${me.user.name}, ${me.user.role}`)), view.bar, view.body);
      await view.show(route.query.get('tab') || 'tokens');
      return view.close;
    },
  };
}
