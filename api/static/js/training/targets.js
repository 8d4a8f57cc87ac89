// Where a task trains: the compute target picker's fields (target, nodes, the task's own Slurm options) for the
// configuration form, and a line saying what the chosen target offers (GET /targets: this machine's devices,
// Slurm partitions from sinfo, each ssh host's GPUs).
//
//   Object.assign(WIDGETS, TARGET_WIDGETS);  offerNote(form.fields.get('target'), task.resources)

import { api } from '../api.js';

export const TARGET_FIELDS = ['target', 'nodes', 'slurm'];

export const TARGET_WIDGETS = {
  target: { label: 'Compute target', type: 'choice', choices: ['local', 'slurm', 'hosts'] },
  nodes: { label: 'Nodes', type: 'int', min: 1 },
  slurm: { label: 'Slurm options', type: 'json', placeholder: '{"partition": "gpu", "time_limit": "1-00:00:00"}' },
};

// JSON object text -> object (the `json` widget type); throws a readable message.
export function parseObject(text) {
  let v;
  try { v = JSON.parse(text); } catch (_) { throw new Error('write a JSON object, e.g. {"partition": "gpu"}'); }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('must be a JSON object');
  return v;
}

function describe(t) {
  const o = t.offers || {};
  if (t.name === 'local') return `this machine: ${o.devices} ${o.mode === 'cpu' ? 'CPU slot' : 'GPU'}(s)`;
  if (t.name === 'slurm') {
    if (o.error) return `Slurm: ${o.error}`;
    const parts = (o.partitions || []).map((p) => `${p.name}${p.default ? '*' : ''} ${p.idle_nodes}/${p.nodes} idle, ${p.cpus_per_node} CPUs${p.gres && p.gres !== '(null)' ? `, ${p.gres}` : ''}`);
    return `Slurm, up to ${o.max_nodes} node(s): ${parts.join('; ') || 'no partition'}`;
  }
  const hosts = (o.hosts || []).map((x) => (x.error ? `${x.host}: ${x.error}` : `${x.host} ${x.gpus.length} GPU(s)`));
  return `ssh hosts: ${hosts.join('; ') || 'none (ssh_hosts setting)'}`;
}

// Show, under the target field, what the chosen target offers and which folders must be shared.
export async function offerNote(field, resources) {
  if (!field) return;
  let view;
  try { view = await api('targets'); } catch (_) { return; }
  const chosen = (resources && resources.target) || 'local';
  const t = view.targets.find((x) => x.name === chosen);
  const shared = chosen === 'local' ? [] : (view.shared || []).filter((s) => s.warning).map((s) => s.warning);
  field.hint.textContent = [t ? describe(t) : `${chosen} is not offered here (compute_targets)`, ...shared].join(' — ');
}
