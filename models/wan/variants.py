"""The Wan models we train, as data, and how to tell which one a checkpoint folder holds.

No torch here: the studio imports this to validate forms. Detection reads only small JSON files and
looks at which files exist; it never relies on `dim` alone, because the tiny test models have small
dims. A single-expert t2v transformer with dim 5120 is the 14B and one with dim 1536 the 1.3B; any other
dim (the tiny models) is the 14B when its weights are sharded (the 14B ships an index and shards, the
1.3B one file) and the 1.3B otherwise.

    v = VARIANTS['wan2.2-t2v-a14b']
    v.experts, v.boundary            # ('high_noise', 'low_noise'), 0.875
    variant_of_folder(Path('Wan2.1-T2V-1.3B')).id
"""

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WanVariant:
    id: str
    task: str                     # 't2v' | 'i2v' | 'ti2v'
    experts: tuple                # ('main',) or ('high_noise', 'low_noise')
    boundary: float | None        # A14B: timestep fraction (0..1) at and above which the high-noise expert runs
    framerate: int                # frames per second the model was trained at
    size_multiple: int            # width and height must be multiples of this
    vae: str                      # 'wan2.1' | 'wan2.2'
    vae_stride: tuple             # (time, height, width) compression of the VAE
    z_dim: int                    # latent channels
    uses_clip: bool               # Wan2.1 i2v: CLIP ViT-H/14 image features go into cross-attention
    i2v_condition: bool           # mask + first-frame latent concatenated to the noisy latent (in_dim 36)

    @property
    def two_experts(self) -> bool:
        return len(self.experts) == 2

    def media_spec(self, framerate=None):
        """What the dataset builder needs to know of this model's media (frame rate, size multiple, video).
        framerate: the checkpoint's own rate where it differs from the variant's (SkyReels-V2: 24)."""
        from utils.dataset import MediaSpec
        return MediaSpec(framerate or self.framerate, self.size_multiple, needs_video=self.i2v_condition)


def _v(id, task, experts=('main',), boundary=None, framerate=16, size_multiple=16, vae='wan2.1',
       uses_clip=False, i2v_condition=False):
    wan22_vae = vae == 'wan2.2'
    return WanVariant(id=id, task=task, experts=experts, boundary=boundary, framerate=framerate,
                      size_multiple=size_multiple, vae=vae,
                      vae_stride=(4, 16, 16) if wan22_vae else (4, 8, 8),
                      z_dim=48 if wan22_vae else 16, uses_clip=uses_clip, i2v_condition=i2v_condition)


EXPERTS = ('high_noise', 'low_noise')
SKYREELS_FRAMERATE = 24


def checkpoint_framerate(variant: WanVariant, ckpt_path) -> int:
    """Frames per second a checkpoint was trained at. SkyReels-V2 models have the Wan2.1 architecture and
    config but were trained at 24 fps; nothing in their files says so, so, as diffusion-pipe does, a
    ckpt_path folder whose name contains 'skyreels' (any case) means 24 fps."""
    if ckpt_path and 'skyreels' in Path(ckpt_path).name.lower():
        return SKYREELS_FRAMERATE
    return variant.framerate

VARIANTS = {v.id: v for v in (
    _v('wan2.1-t2v-1.3b', 't2v'),
    _v('wan2.1-t2v-14b', 't2v'),
    _v('wan2.1-i2v-14b', 'i2v', uses_clip=True, i2v_condition=True),
    _v('wan2.2-t2v-a14b', 't2v', experts=EXPERTS, boundary=0.875),
    _v('wan2.2-i2v-a14b', 'i2v', experts=EXPERTS, boundary=0.9, i2v_condition=True),
    _v('wan2.2-ti2v-5b', 'ti2v', framerate=24, size_multiple=32, vae='wan2.2'),
)}

# Official Wan-AI folder: the file names the upstream code loads.
OFFICIAL_FILES = {
    'config': 'config.json',
    'transformer_index': 'diffusion_pytorch_model.safetensors.index.json',
    'transformer_single': 'diffusion_pytorch_model.safetensors',
    'vae_wan2.1': 'Wan2.1_VAE.pth',
    'vae_wan2.2': 'Wan2.2_VAE.pth',
    't5': 'models_t5_umt5-xxl-enc-bf16.pth',
    't5_tokenizer': 'google/umt5-xxl',
    'clip': 'models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth',
    'clip_tokenizer': 'xlm-roberta-large',
}
EXPERT_FOLDERS = {'high_noise': 'high_noise_model', 'low_noise': 'low_noise_model'}
T2V_14B_DIM = 5120
T2V_1_3B_DIM = 1536


class UnknownVariant(ValueError):
    """The config and folder do not match any variant we support; the message says what was seen."""


def _t2v_single(dim, sharded: bool) -> WanVariant:
    if dim == T2V_14B_DIM or (dim != T2V_1_3B_DIM and sharded):
        return VARIANTS['wan2.1-t2v-14b']
    return VARIANTS['wan2.1-t2v-1.3b']


def detect_variant(config: dict, *, model_index: dict | None = None, two_experts: bool = False,
                   wan22_vae: bool = False, clip: bool = False, sharded: bool = False) -> WanVariant:
    """Which variant a transformer config describes.

    Official layout: `config` is the official config.json (`model_type`, `dim`, `in_dim`, `out_dim`) and the
    keyword flags are folder facts (high_noise_model/low_noise_model subfolders, Wan2.2_VAE.pth, CLIP file,
    transformer weights sharded with an index).
    Diffusers layout: `config` is transformer/config.json and `model_index` is model_index.json.
    """
    if model_index is not None:
        return _detect_diffusers(config, model_index, sharded)
    model_type = config.get('model_type')
    if model_type == 'ti2v' or wan22_vae:
        return VARIANTS['wan2.2-ti2v-5b']
    if model_type == 't2v':
        if two_experts:
            return VARIANTS['wan2.2-t2v-a14b']
        return _t2v_single(config.get('dim'), sharded)
    if model_type == 'i2v':
        if two_experts and not clip:
            return VARIANTS['wan2.2-i2v-a14b']
        return VARIANTS['wan2.1-i2v-14b']
    raise UnknownVariant(f"model_type = {model_type!r} is not supported (supported: 't2v', 'i2v', 'ti2v')")


def _detect_diffusers(config: dict, model_index: dict, sharded: bool) -> WanVariant:
    second = model_index.get('transformer_2')
    two = bool(second and second[0])
    in_channels = config.get('in_channels')
    if model_index.get('expand_timesteps') or in_channels == 48:
        return VARIANTS['wan2.2-ti2v-5b']
    if in_channels == 36:
        if config.get('image_dim'):
            return VARIANTS['wan2.1-i2v-14b']
        if two:
            return VARIANTS['wan2.2-i2v-a14b']
        raise UnknownVariant('in_channels = 36 without image_dim and without transformer_2: '
                             'neither Wan2.1 I2V (CLIP) nor Wan2.2 I2V-A14B (two experts)')
    if in_channels == 16:
        if two:
            return VARIANTS['wan2.2-t2v-a14b']
        return _t2v_single(config.get('num_attention_heads', 0) * config.get('attention_head_dim', 0), sharded)
    raise UnknownVariant(f'in_channels = {in_channels!r} is not a Wan text/image-to-video transformer (16, 36 or 48)')


def folder_facts(root: Path) -> dict:
    """The file-presence facts of an official folder that `detect_variant` takes as keywords."""
    root = Path(root)
    return {
        'two_experts': all((root / d).is_dir() for d in EXPERT_FOLDERS.values()),
        'wan22_vae': (root / OFFICIAL_FILES['vae_wan2.2']).exists(),
        'clip': (root / OFFICIAL_FILES['clip']).exists(),
        'sharded': (root / OFFICIAL_FILES['transformer_index']).exists(),
    }


def variant_of_folder(root) -> WanVariant:
    """Detect the variant of an official or Diffusers folder from its small JSON files and file names."""
    root = Path(root)
    if (root / 'model_index.json').exists():
        index = json.loads((root / 'model_index.json').read_text())
        config = json.loads((root / 'transformer' / 'config.json').read_text())
        sharded = (root / 'transformer' / OFFICIAL_FILES['transformer_index']).exists()
        return detect_variant(config, model_index=index, sharded=sharded)
    facts = folder_facts(root)
    config_path = root / 'config.json'
    if not config_path.exists() and facts['two_experts']:
        config_path = root / EXPERT_FOLDERS['low_noise'] / 'config.json'
    return detect_variant(json.loads(config_path.read_text()), **facts)
