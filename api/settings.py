"""Studio settings: defaults below, then a settings file, then ODEO_* environment variables, then flags.

Every field can be set from the environment as ODEO_<FIELD IN CAPITALS> (e.g. ODEO_DATA_ROOT, or the
short aliases in ENV_ALIASES such as ODEO_DATA), and from a TOML settings file: the one named by
ODEO_SETTINGS, else <data root>/settings.toml when it exists. Lists come from the environment
separated by os.pathsep (model roots) or commas.
"""

import os
import sys
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Settings:
    # One object every service reads its values from. Only the EDITABLE fields below change after start, in place,
    # through the Settings page (api/services/system/service.py); every other field keeps the value it started with.
    data_root: str = './data'                       # everything the studio owns: runs/, datasets/, models/, queue.json
    host: str = '127.0.0.1'                         # bind address; anything but loopback needs a token
    port: int = 8080                                # HTTP port
    token: str = ''                                 # access token; when set every API call needs it
    allowed_hosts: tuple = ()                       # more Host names served besides the bind address, localhost
                                                    # and loopback IPs (a DNS name or reverse-proxy name the studio is
                                                    # reached by; '*' turns the check off); others get 421
    comfyui_url: str = 'http://127.0.0.1:8188'      # ComfyUI the Inference studio talks to
    comfyui_mode: str = 'external'                  # external: the ComfyUI at comfyui_url; managed: each infer job starts comfyui_path on its GPU
    comfyui_path: str = str(REPO_ROOT / 'submodules' / 'ComfyUI')   # checkout started in managed mode (git submodule)
    comfyui_python: str = ''                        # interpreter with ComfyUI's requirements (default: `python`)
    comfyui_loras_dir: str = ''                     # a LoRA folder that ComfyUI scans (default: <comfyui_path>/models/loras)
    max_image_upload_bytes: int = 64 * 1024 * 1024  # largest gallery image upload in one request
    model_roots: tuple = ()                         # extra folders scanned for checkpoints (<data>/models always is)
    gpu_backend: str = 'auto'                       # auto | nvml | nvidia-smi | cpu (cpu: run jobs on CPU slots)
    gpu_memory_threshold_gib: float = 2.0           # a GPU using more memory than this is busy (others' processes)
    cpu_slots: int = 2                              # pseudo-devices when jobs run on the CPU
    heartbeat_timeout_s: float = 300.0              # no event for this long -> the job is hung: killed and resumed
    startup_timeout_s: float = 1800.0               # the same while a job starts up (launch, op build, loading, caching)
    torch_extensions_dir: str = str(REPO_ROOT / 'build' / 'torch_extensions')  # where jobs' DeepSpeed JIT ops are built
    build_lock_stale_s: float = 600.0               # a build lock there older than this, with no job starting up, is removed
    retry_limit: int = 3                            # automatic resumes after a crash, hang or interruption
    stop_grace_s: float = 120.0                     # after control/stop, wait this long before SIGTERM
    kill_grace_s: float = 30.0                      # after SIGTERM, wait this long before SIGKILL
    queue_policy: str = 'strict'                    # strict: first in queue first; backfill: later jobs that fit may start
    scheduler_interval_s: float = 1.0               # how often the scheduler looks at jobs and GPUs
    port_range: tuple = (29500, 29999)              # master ports handed to DeepSpeed jobs
    launcher: str = 'deepspeed'                     # deepspeed | python (one process, no launcher; tests)
    trainer_script: str = str(REPO_ROOT / 'train.py')   # the training entry point the launcher runs
    job_nice: int = 10                              # CPU niceness of jobs, so the studio stays responsive
    python: str = sys.executable                    # interpreter of the studio's virtual environment
    deepspeed: str = ''                             # deepspeed launcher (default: next to `python`)
    max_request_bytes: int = 2 * 1024 * 1024        # larger request bodies get 413
    log_chunk_bytes: int = 256 * 1024               # most bytes one log read returns
    threads: int = 64                               # waitress worker threads (50 pollers and then some)
    gpu_cache_s: float = 2.0                        # GPU inventory is re-read at most this often
    resource_sample_s: float = 5.0                  # GPU / CPU / RAM sampled this often for the GPUs area's charts (0: off)
    resource_keep: int = 720                        # samples kept in memory (720 at 5 s: the last hour)
    max_upload_bytes: int = 64 * 1024 ** 3          # largest single file an upload may declare (Data studio)
    upload_chunk_bytes: int = 16 * 1024 * 1024      # bytes the browser sends per upload request
    upload_expiry_s: float = 24 * 3600.0            # an unfinished upload untouched this long is removed
    import_roots: tuple = ()                        # server folders imports may read (<data>/imports always)
    backup_dir: str = ''                            # snapshots go here (default <data>/backups: same disk; point it at a share)
    backup_interval_h: float = 24.0                 # a snapshot every this many hours; 0 turns the schedule off
    backup_keep_daily: int = 7                      # keep the newest snapshot of each of the last N days that have one
    backup_keep_weekly: int = 4                     # ... and of each of the last M weeks that have one
    backup_include_media: bool = False              # also copy media, model weights, caches, checkpoints (else listed)
    hf_endpoint: str = ''                           # Hugging Face hub or mirror for downloads (empty: HF_ENDPOINT, else huggingface.co)
    hf_token: str = ''                              # hub access token for gated repos; never shown by the API
    max_image_pixels: int = 40_000_000              # stills with more pixels (read from the header) are refused, never decoded
    media_slots: int = 2                            # probes, thumbnails, strips and preview copies that may run at once
    compute_targets: tuple = ('local',)             # where tasks may train: local (this machine), slurm, hosts (ssh_hosts)
    slurm_partition: str = ''                       # sbatch --partition (empty: the cluster's default); tasks may override
    slurm_account: str = ''                         # sbatch --account
    slurm_qos: str = ''                             # sbatch --qos
    slurm_gpus_per_node: int = 0                    # GPUs per node (0: the task's gpus)
    slurm_max_nodes: int = 1                        # most nodes a task may ask for
    slurm_time_limit: str = ''                      # sbatch --time, e.g. 2-00:00:00 (a job past it is retried from its checkpoint)
    slurm_sbatch_options: tuple = ()                # more sbatch options, e.g. ['--constraint=a100', '--exclusive']
    slurm_bin: str = ''                             # folder of sbatch, squeue, ... (empty: PATH); SLURM_CONF from the environment
    slurm_poll_s: float = 5.0                       # squeue is asked at most this often
    ssh_hosts: tuple = ()                           # hosts of the `hosts` target, 'name' or 'name:slots' (a DeepSpeed hostfile)
    media_wait_s: float = 5.0                       # a media request waits this long for a slot, then gets 503 + Retry-After
    auth: str = 'single'                            # single: one user (loopback, or the token); accounts: users log in
    behind_tls: bool = False                        # served over HTTPS (a TLS proxy in front): session cookies are Secure
    session_hours: float = 168.0                    # a login lasts this long (accounts)
    max_gpus_per_user: int = 0                      # devices one user's running jobs may hold at once (0: no limit; accounts)

    @property
    def data_path(self) -> Path:
        return Path(self.data_root).expanduser().resolve()

    @property
    def deepspeed_path(self) -> str:
        return self.deepspeed or str(Path(self.python).parent / 'deepspeed')

    @property
    def all_model_roots(self) -> list:
        roots = [self.data_path / 'models'] + [Path(r).expanduser().resolve() for r in self.model_roots]
        return list(dict.fromkeys(roots))

    @property
    def all_import_roots(self) -> list:
        roots = [self.data_path / 'imports'] + [Path(r).expanduser().resolve() for r in self.import_roots]
        return list(dict.fromkeys(roots))


ENV_ALIASES = {'ODEO_DATA': 'data_root'}
CHOICES = {
    'gpu_backend': ('auto', 'nvml', 'nvidia-smi', 'cpu'),
    'queue_policy': ('strict', 'backfill'),
    'launcher': ('deepspeed', 'python'),
    'comfyui_mode': ('external', 'managed'),
    'auth': ('single', 'accounts'),
}
TARGET_NAMES = ('local', 'slurm', 'hosts')


class SettingsError(ValueError):
    def __init__(self, message, field=None):
        super().__init__(message)
        self.field = field


def _coerce(name, value):
    """Turn a string (env) or TOML value into the field's type; raise SettingsError naming the field."""
    default = Settings.__dataclass_fields__[name].default
    try:
        if isinstance(default, bool):
            value = value if isinstance(value, bool) else str(value).lower() in ('1', 'true', 'yes', 'on')
        elif isinstance(default, int):
            value = int(value)
        elif isinstance(default, float):
            value = float(value)
        elif isinstance(default, tuple):
            if isinstance(value, str):
                sep = os.pathsep if name in ('model_roots', 'import_roots') else ('-' if name == 'port_range' else ',')
                value = [v for v in value.split(sep) if v.strip()]
            value = tuple(int(v) for v in value) if name == 'port_range' else tuple(str(v) for v in value)
        else:
            value = str(value)
    except (TypeError, ValueError):
        raise SettingsError(f'setting {name}: {value!r} is not a valid {type(default).__name__}', name) from None
    if name in CHOICES and value not in CHOICES[name]:
        raise SettingsError(f'setting {name}: {value!r} must be one of {", ".join(CHOICES[name])}', name)
    if name == 'compute_targets' and (not value or set(value) - set(TARGET_NAMES)):
        raise SettingsError(f'setting compute_targets: {value!r} must name some of {", ".join(TARGET_NAMES)}', name)
    if name == 'port_range' and (len(value) != 2 or not 1024 <= value[0] <= value[1] <= 65535):
        raise SettingsError(f'setting port_range: {value!r} must be two ports FIRST-LAST between 1024 and 65535')
    return value


def _from_env(env):
    out = {}
    for f in fields(Settings):
        key = f'ODEO_{f.name.upper()}'
        if key in env:
            out[f.name] = env[key]
    for key, name in ENV_ALIASES.items():
        if key in env and f'ODEO_{name.upper()}' not in env:
            out[name] = env[key]
    return out


def _from_file(path):
    try:
        raw = tomllib.loads(Path(path).read_text(encoding='utf-8'))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise SettingsError(f'settings file {path}: {e}') from None
    unknown = set(raw) - {f.name for f in fields(Settings)}
    if unknown:
        raise SettingsError(f'settings file {path}: unknown setting(s) {", ".join(sorted(unknown))}')
    return raw


def load_settings(overrides=None, env=None) -> Settings:
    """Defaults < settings file < environment < overrides (flags, or create_app's config)."""
    env = os.environ if env is None else env
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = set(overrides) - {f.name for f in fields(Settings)}
    if unknown:
        raise SettingsError(f'unknown setting(s): {", ".join(sorted(unknown))}')
    from_env = _from_env(env)
    data_root = overrides.get('data_root') or from_env.get('data_root') or Settings.data_root
    file = env.get('ODEO_SETTINGS') or (Path(data_root).expanduser() / 'settings.toml')
    from_file = _from_file(file) if (env.get('ODEO_SETTINGS') or Path(file).is_file()) else {}
    merged = {**from_file, **from_env, **overrides}
    settings = replace(Settings(), **{k: _coerce(k, v) for k, v in merged.items()})
    if settings.auth == 'accounts' and settings.token:
        raise SettingsError("auth = 'accounts' replaces the shared access token: unset token (ODEO_TOKEN) and give "
                            'scripts personal API tokens')
    return settings


def public_view(settings: Settings) -> dict:
    """What the API shows about its settings (never the access token nor the hub token)."""
    return {
        'data_root': str(settings.data_path),
        'model_roots': [str(r) for r in settings.all_model_roots],
        'gpu_backend': settings.gpu_backend,
        'gpu_memory_threshold_gib': settings.gpu_memory_threshold_gib,
        'cpu_slots': settings.cpu_slots,
        'heartbeat_timeout_s': settings.heartbeat_timeout_s,
        'retry_limit': settings.retry_limit,
        'stop_grace_s': settings.stop_grace_s,
        'kill_grace_s': settings.kill_grace_s,
        'queue_policy': settings.queue_policy,
        'comfyui_url': settings.comfyui_url,
        'comfyui_mode': settings.comfyui_mode,
        'max_image_upload_bytes': settings.max_image_upload_bytes,
        'token_required': bool(settings.token),
        'allowed_hosts': list(settings.allowed_hosts),
        'max_request_bytes': settings.max_request_bytes,
        'max_upload_bytes': settings.max_upload_bytes,
        'upload_chunk_bytes': settings.upload_chunk_bytes,
        'import_roots': [str(r) for r in settings.all_import_roots],
        'hf_endpoint': settings.hf_endpoint or os.environ.get('HF_ENDPOINT') or '',
        'hf_token_set': bool(settings.hf_token),
        'compute_targets': list(settings.compute_targets),
        'auth': settings.auth,
        'max_gpus_per_user': settings.max_gpus_per_user,
    }


# ---- editing the settings file (the Settings page) ---------------------------------------------------

EDITABLE = ('comfyui_mode', 'comfyui_url', 'model_roots', 'import_roots', 'gpu_memory_threshold_gib', 'retry_limit',
            'heartbeat_timeout_s')
LIMITS = {'gpu_memory_threshold_gib': (0.0, 1024.0), 'retry_limit': (0, 100), 'heartbeat_timeout_s': (10.0, 86400.0)}


def settings_file(settings: Settings, env=None) -> Path:
    """The file the studio reads its settings from: ODEO_SETTINGS, else <data root>/settings.toml."""
    env = os.environ if env is None else env
    return Path(env.get('ODEO_SETTINGS') or (settings.data_path / 'settings.toml'))


def locked_fields(env=None) -> dict:
    """{field: variable} for settings the environment sets: a value written to the file would not apply."""
    env = os.environ if env is None else env
    out = {f'{k[5:].lower()}': k for k in env if k.startswith('ODEO_') and k[5:].lower() in Settings.__dataclass_fields__}
    out.update({name: key for key, name in ENV_ALIASES.items() if key in env and name not in out})
    return out


def check_changes(changes) -> dict:
    """Editable settings from a request, coerced and checked; SettingsError names the first field at fault."""
    if not isinstance(changes, dict) or not changes:
        raise SettingsError('give an object of settings to change', 'settings')
    out = {}
    for name, value in changes.items():
        if name not in EDITABLE:
            raise SettingsError(f'setting {name} cannot be changed here; editable: {", ".join(EDITABLE)}', name)
        if name in ('model_roots', 'import_roots') and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise SettingsError(f'setting {name}: give a list of folders', name)
        if name in LIMITS and (isinstance(value, bool) or not isinstance(value, (int, float, str))
                               or (name == 'retry_limit' and isinstance(value, float) and not value.is_integer())):
            raise SettingsError(f'setting {name}: {value!r} is not a {"whole " if name == "retry_limit" else ""}number',
                                name)
        value = _coerce(name, [v.strip() for v in value if v.strip()] if isinstance(value, list) else value)
        if name in LIMITS:
            lo, hi = LIMITS[name]
            if not lo <= value <= hi:
                raise SettingsError(f'setting {name}: {value!r} must be between {lo:g} and {hi:g}', name)
        if name == 'comfyui_url':
            _check_url(value)
        if name in ('model_roots', 'import_roots'):
            for folder in value:
                path = Path(folder).expanduser()
                if not path.is_absolute() or not path.is_dir():
                    raise SettingsError(f'setting {name}: {folder!r} is not an existing folder (give an absolute path)',
                                        name)
        out[name] = value
    return out


def _check_url(url):
    from urllib.parse import urlsplit
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise SettingsError(f'setting comfyui_url: {url!r} is not a URL ({e})', 'comfyui_url') from None
    if parts.scheme not in ('http', 'https') or not parts.hostname or parts.path not in ('', '/') or parts.query:
        raise SettingsError(f'setting comfyui_url: {url!r} must look like http://host:port', 'comfyui_url')
    return port


def write_settings_file(path: Path, changes: dict):
    """Set `changes` in the TOML settings file, keeping its comments, order and other keys; written atomically.
    An existing file that does not parse, or names unknown settings, is left alone (SettingsError)."""
    import tomlkit

    from utils.fsutil import atomic_write_text
    path = Path(path)
    text = path.read_text(encoding='utf-8') if path.is_file() else (
        '# ODEO Studio settings (api/settings.py documents every one); ODEO_* variables override them.\n')
    _from_file(path) if path.is_file() else None              # refuses a broken or unknown file first
    doc = tomlkit.parse(text)
    for name, value in changes.items():
        doc[name] = list(value) if isinstance(value, tuple) else value
    atomic_write_text(path, tomlkit.dumps(doc))
