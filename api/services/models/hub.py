"""What to download for a model, from which hub repositories: the table of files each Wan variant needs in
each layout (README, "Real weights"), the captioners, and the download plan built from the hub's file list.

    plan = make_plan(choice('wan2.1-t2v-1.3b', 'official'), api=HfApi(endpoint, token=token))
    plan['sources'][0]      # {repo, revision, commit, files: [{repo_path, path, size, sha256, blob_id}]}

A plan is pinned to the commit the hub named for the requested revision, so every file of one download comes
from one commit even when the branch moves meanwhile. Only files matching the variant's patterns are listed;
a required pattern that matches nothing refuses the plan (the repository is not what we expected).
"""

import fnmatch
import shutil
from dataclasses import dataclass

from ..errors import InsufficientStorage, Invalid, NotFound, Unavailable

LAYOUTS = ('official', 'diffusers', 'comfy')
T5 = 'models_t5_umt5-xxl-enc-bf16.pth'
CLIP = 'models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth'
TOKENIZER = 'google/umt5-xxl/*'
COMFY_21 = 'Comfy-Org/Wan_2.1_ComfyUI_repackaged'
COMFY_22 = 'Comfy-Org/Wan_2.2_ComfyUI_Repackaged'
COMFY_TEXT_ENCODER = 'split_files/text_encoders/umt5_xxl_fp16.safetensors'   # the 2.2 repo ships only scaled fp8
MARGIN_BYTES = 1024 ** 3            # free space a download leaves on its disk


@dataclass(frozen=True)
class WanRepos:
    official: str                 # Wan-AI repository (the -Diffusers twin appends '-Diffusers')
    comfy: str                    # ComfyUI repackaged repository
    comfy_transformers: tuple     # its diffusion_models/ file(s), one per expert
    experts: bool = False         # Wan2.2 A14B: high_noise_model/ and low_noise_model/
    vae: str = 'Wan2.1_VAE.pth'
    clip: bool = False            # Wan2.1 I2V


WAN = {
    'wan2.1-t2v-1.3b': WanRepos('Wan-AI/Wan2.1-T2V-1.3B', COMFY_21, ('wan2.1_t2v_1.3B_fp16.safetensors',)),
    'wan2.1-t2v-14b': WanRepos('Wan-AI/Wan2.1-T2V-14B', COMFY_21, ('wan2.1_t2v_14B_fp16.safetensors',)),
    'wan2.1-i2v-14b': WanRepos('Wan-AI/Wan2.1-I2V-14B-480P', COMFY_21, ('wan2.1_i2v_480p_14B_fp16.safetensors',),
                               clip=True),
    'wan2.2-t2v-a14b': WanRepos('Wan-AI/Wan2.2-T2V-A14B', COMFY_22, ('wan2.2_t2v_high_noise_14B_fp16.safetensors',
                                                                      'wan2.2_t2v_low_noise_14B_fp16.safetensors'),
                                experts=True),
    'wan2.2-i2v-a14b': WanRepos('Wan-AI/Wan2.2-I2V-A14B', COMFY_22, ('wan2.2_i2v_high_noise_14B_fp16.safetensors',
                                                                      'wan2.2_i2v_low_noise_14B_fp16.safetensors'),
                                experts=True),
    'wan2.2-ti2v-5b': WanRepos('Wan-AI/Wan2.2-TI2V-5B', COMFY_22, ('wan2.2_ti2v_5B_fp16.safetensors',),
                               vae='Wan2.2_VAE.pth'),
}

# Captioning models (api/jobs/captioners.py loads them): transformers' save_pretrained folders.
CAPTIONER_FILES = ('*.json', '*.safetensors', '*.txt', '*.model', '*.jinja', '*.py')
CAPTIONERS = {
    'qwen2.5-vl-3b': 'Qwen/Qwen2.5-VL-3B-Instruct',
    'qwen2.5-vl-7b': 'Qwen/Qwen2.5-VL-7B-Instruct',
    'qwen3-vl-4b': 'Qwen/Qwen3-VL-4B-Instruct',
    'qwen3-vl-8b': 'Qwen/Qwen3-VL-8B-Instruct',
    'florence-2-large': 'florence-community/Florence-2-large',
}


@dataclass(frozen=True)
class Source:
    repo: str
    required: tuple               # patterns that must each match at least one file
    optional: tuple = ()          # patterns taken when present
    strip: str = ''               # prefix removed from the repository path to get the local path


@dataclass(frozen=True)
class Choice:
    kind: str                     # 'wan' | 'captioner'
    variant: str
    layout: str
    sources: tuple
    default_name: str


def _official_small(r: WanRepos):
    """The official files a ComfyUI transformer still needs next to it: config(s), VAE, tokenizer (+ CLIP)."""
    configs = ('high_noise_model/config.json', 'low_noise_model/config.json') if r.experts else ('config.json',)
    return configs + (r.vae, TOKENIZER) + ((CLIP,) if r.clip else ())


def _official(r: WanRepos):
    if r.experts:
        weights = tuple(f'{e}/diffusion_pytorch_model*.safetensors*' for e in ('high_noise_model', 'low_noise_model'))
    else:
        weights = ('diffusion_pytorch_model*.safetensors*',)
    return _official_small(r) + weights + (T5,)


def _diffusers(r: WanRepos):
    required = ['model_index.json', 'transformer/*', 'vae/*', 'text_encoder/*', 'tokenizer/*', 'scheduler/*']
    if r.experts:
        required.append('transformer_2/*')
    if r.clip:
        required += ['image_encoder/*', 'image_processor/*']
    return tuple(required)


def wan_choice(variant, layout):
    r = WAN[variant]
    base = r.official.split('/')[1]
    if layout == 'official':
        return Choice('wan', variant, layout, (Source(r.official, _official(r)),), base)
    if layout == 'diffusers':
        return Choice('wan', variant, layout, (Source(r.official + '-Diffusers', _diffusers(r)),),
                      base + '-Diffusers')
    comfy = tuple(f'split_files/diffusion_models/{f}' for f in r.comfy_transformers)
    sources = [Source(r.official, _official_small(r)), Source(r.comfy, comfy, strip='split_files/')]
    if r.comfy == COMFY_21:
        sources[1] = Source(r.comfy, comfy + (COMFY_TEXT_ENCODER,), strip='split_files/')
    else:
        sources.append(Source(COMFY_21, (COMFY_TEXT_ENCODER,), strip='split_files/'))
    return Choice('wan', variant, layout, tuple(sources), base + '-ComfyUI')


def choice(variant, layout=None):
    """The download a request names: a Wan variant in a layout, or a captioner (layout ignored)."""
    if variant in CAPTIONERS:
        repo = CAPTIONERS[variant]
        return Choice('captioner', variant, 'transformers', (Source(repo, ('config.json',), CAPTIONER_FILES),),
                      repo.split('/')[1])
    if variant not in WAN:
        raise Invalid(f'unknown model {variant!r}; choose a Wan variant ({", ".join(WAN)}) or a captioner '
                      f'({", ".join(CAPTIONERS)})', field='variant')
    layout = layout or 'official'
    if layout not in LAYOUTS:
        raise Invalid(f'layout must be one of {", ".join(LAYOUTS)}', field='layout')
    return wan_choice(variant, layout)


def choices():
    """What the download form offers."""
    wan = [{'id': v, 'kind': 'wan', 'layouts': {lay: [s.repo for s in wan_choice(v, lay).sources] for lay in LAYOUTS}}
           for v in WAN]
    return wan + [{'id': c, 'kind': 'captioner', 'layouts': {'transformers': [repo]}} for c, repo in CAPTIONERS.items()]


def _matches(name, patterns):
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _files(source: Source, info):
    siblings = info.siblings or []
    out, unmatched = [], []
    for p in source.required:
        if not any(fnmatch.fnmatchcase(s.rfilename, p) for s in siblings):
            unmatched.append(p)
    if unmatched:
        raise Invalid(f'{source.repo} at {info.sha} has no file matching {", ".join(unmatched)}; '
                      'is this the right repository (or mirror)?', field='variant')
    for s in siblings:
        if not _matches(s.rfilename, source.required + source.optional):
            continue
        local = s.rfilename[len(source.strip):] if s.rfilename.startswith(source.strip) else s.rfilename
        size = s.lfs.size if s.lfs else s.size
        out.append({'repo_path': s.rfilename, 'path': local, 'size': size,
                    'sha256': s.lfs.sha256 if s.lfs else None, 'blob_id': None if s.lfs else s.blob_id})
    return out


def make_plan(ch: Choice, api, revision=None):
    """{kind, variant, layout, sources: [{repo, revision, commit, files}], total_bytes} from the hub's listing.
    `revision` (branch, tag or commit) applies to the first source, the others take their main branch."""
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError
    sources = []
    for i, src in enumerate(ch.sources):
        rev = (revision if i == 0 else None) or 'main'
        try:
            info = api.model_info(src.repo, revision=rev, files_metadata=True, timeout=30)
        except (RepositoryNotFoundError, RevisionNotFoundError) as e:
            raise NotFound(f'{src.repo}@{rev} not found on {api.endpoint}: {str(e).splitlines()[0]}',
                           field='revision' if i == 0 and revision else 'variant') from None
        except (HfHubHTTPError, OSError, ValueError) as e:
            raise Unavailable(f'cannot list {src.repo}@{rev} on {api.endpoint}: {type(e).__name__}: '
                                 f'{str(e).splitlines()[0] if str(e) else ""}', field='variant') from None
        sources.append({'repo': src.repo, 'revision': rev, 'commit': info.sha, 'files': _files(src, info)})
    seen = set()
    for s in sources:
        for f in s['files']:
            if f['path'] in seen:
                raise Invalid(f'two sources both provide {f["path"]}', field='variant')
            seen.add(f['path'])
    return {'kind': ch.kind, 'variant': ch.variant, 'layout': ch.layout, 'sources': sources,
            'total_bytes': sum(f['size'] or 0 for s in sources for f in s['files'])}


def free_bytes(path):
    return shutil.disk_usage(path).free


def check_space(root, needed):
    """Refuse a download whose remaining bytes (plus MARGIN_BYTES) do not fit on root's disk."""
    free = free_bytes(root)
    if needed + MARGIN_BYTES > free:
        raise InsufficientStorage(f'not enough disk space in {root}: the download needs {needed} more bytes '
                                  f'({needed / 1024 ** 3:.2f} GiB) plus a {MARGIN_BYTES / 1024 ** 3:.0f} GiB margin, '
                                  f'{free} bytes ({free / 1024 ** 3:.2f} GiB) are free', field='root')
