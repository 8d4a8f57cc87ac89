"""Our loaders against the official Wan code (wan22, tests/support/wan_official.py).

Tiny networks are built with the official classes (random values in every tensor), saved as the Wan-AI
folders are, loaded with our loaders (models/wan/checkpoints.py and weights.py through the trainer's adapter), and both
sides run in float32 on the same inputs. What is compared is what training uses: the text encoding as
the trainer pads it, VAE latents (normalised as the official wrappers normalise them) and decoded frames,
the CLIP image tokens, and the velocity the trainer's pipeline layers predict, for every variant.
Each comparison prints its max relative error (pytest -s).
"""

import pytest
import torch

from tests.support import wan_official as wo
from tests.support.trainer import cache_items, config_text, write_config

TOL = 1e-5          # max |ours - official| / max |official|
CAPTIONS = ['a red fox runs through the snowy forest at dawn, cinematic shot.',
            '  the  robot holds a golden lantern\tand walks past the window on monday.  ',
            'cat']


@pytest.fixture(scope='module')
def folders(tmp_path_factory):
    """Every variant's official folder: {variant: {'root': Path, 'transformers': {expert: official model}}}."""
    root = tmp_path_factory.mktemp('official_wan')
    return {v: wo.write_official_folder(root / v, v) for v in wo.VARIANTS}


def make_adapter(folder, tmp_path):
    from models.wan.adapter import WanAdapter
    from utils.config import load_main_config
    text = config_text(folder, tmp_path / 'dataset.toml', tmp_path / 'out', model_dtype='float32', adapter=None)
    return WanAdapter(load_main_config(write_config(tmp_path, text)))


def check(what, ours, theirs):
    err = wo.relative_error(ours, theirs)
    print(f'{what}: max relative error {err:.1e}')
    assert err <= TOL, f'{what}: relative error {err:.2e} > {TOL}'


def video(frames, height, width, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, frames, height, width, generator=g) * 2 - 1


def test_text_encoding_is_the_official_t5_encoders(folders, tmp_path):
    """adapter.encode_text (trimmed to the prompt's tokens, zero-padded to 512 by collate) against
    T5EncoderModel, which the official pipelines call, reading the same .pth and tokenizer folder."""
    from models.wan.adapter import TEXT_LEN, padded_text
    root = folders['wan2.1-t2v-1.3b']['root']
    adapter = make_adapter(root, tmp_path)
    adapter.load_encoders('cpu')
    ours = adapter.encode_text(CAPTIONS)
    with wo.tiny_wrappers(t5_vocab=wo.t5_vocab_for(root / wo.FILES['t5_tokenizer'])) as mods:
        encoder = mods['t5'].T5EncoderModel(text_len=TEXT_LEN, dtype=torch.float32, device='cpu',
                                           checkpoint_path=str(root / wo.FILES['t5']),
                                           tokenizer_path=str(root / wo.FILES['t5_tokenizer']))
        with torch.no_grad():
            theirs = encoder(CAPTIONS, 'cpu')
    assert [len(o['text_embeddings']) for o in ours] == [len(t) for t in theirs]
    for i, (o, t) in enumerate(zip(ours, theirs)):
        check(f'text {i}', o['text_embeddings'], t)
        # What the transformer gets: the official WanModel pads the context with zeros to text_len.
        padded = torch.cat([t, t.new_zeros(TEXT_LEN - len(t), t.shape[1])])
        check(f'padded text {i}', padded_text(o['text_embeddings']), padded)


@pytest.mark.parametrize('variant, wrapper', [('wan2.1-t2v-1.3b', 'Wan2_1_VAE'), ('wan2.2-ti2v-5b', 'Wan2_2_VAE')])
def test_vae_latents_and_frames_are_the_official_vaes(folders, tmp_path, variant, wrapper):
    """Normalised latents (adapter.encode_media) and decoded frames against the official wrapper's
    encode / decode, which normalise with their own mean and std and read the same .pth."""
    root = folders[variant]['root']
    adapter = make_adapter(root, tmp_path)
    adapter.load_encoders('cpu')
    pixels = video(5, 32, 32)
    ours = adapter.encode_media(pixels)['latents'][0]
    kind = adapter.variant.vae
    with wo.tiny_wrappers() as mods:
        module = mods['vae2_1' if kind == 'wan2.1' else 'vae2_2']
        official = getattr(module, wrapper)(z_dim=adapter.variant.z_dim, vae_pth=str(root / wo.FILES[f'vae_{kind}']),
                                            dtype=torch.float32, device='cpu')
        with torch.no_grad():
            theirs = official.encode([pixels[0]])[0]
            check(f'{kind} VAE latents', ours, theirs)
            frames = official.decode([theirs])[0]
            cfg = adapter.vae.config      # what diffusers' Wan pipelines do before decoding
            mean = torch.tensor(cfg.latents_mean).view(-1, 1, 1, 1)
            std = torch.tensor(cfg.latents_std).view(-1, 1, 1, 1)
            decoded = adapter.vae.decode((theirs * std + mean)[None]).sample[0]
    check(f'{kind} VAE frames', decoded, frames)


def official_clip(root):
    with wo.tiny_wrappers() as mods:
        return mods['animate.clip'].CLIPModel(dtype=torch.float32, device='cpu',
                                              checkpoint_path=str(root / wo.FILES['clip']),
                                              tokenizer_path=str(root / wo.FILES['clip_tokenizer']))


def test_clip_tower_is_the_official_clips(folders):
    """load_image_encoder's CLIPVisionModel (penultimate hidden state) against the official ViT-H/14
    (`visual(x, use_31_block=True)`) on the same normalised pixels, reading the same .pth."""
    from models.wan import checkpoints, weights
    root = folders['wan2.1-i2v-14b']['root']
    encoder, _ = weights.load_image_encoder(checkpoints.inspect_checkpoint({'ckpt_path': str(root)}), torch.float32)
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = encoder(pixel_values=pixels, output_hidden_states=True).hidden_states[-2]
        theirs = official_clip(root).model.visual(pixels, use_31_block=True)
    check('CLIP tower', ours, theirs)


@pytest.mark.parametrize('height, width', [(224, 224), (32, 48)])
def test_clip_image_tokens_are_the_official_pipelines(folders, tmp_path, height, width):
    """adapter.encode_media's CLIP tokens against CLIPModel.visual on the first frame, as the official
    Wan2.1 I2V pipeline calls it: the frame in [-1, 1], resized with torch's bicubic interpolation to
    224 x 224 (no crop), mapped to [0, 1] and normalised; the frame's values are those of an 8-bit video."""
    root = folders['wan2.1-i2v-14b']['root']
    adapter = make_adapter(root, tmp_path)
    adapter.load_encoders('cpu')
    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (1, 3, 2, height, width), generator=g) / 127.5 - 1
    ours = adapter.encode_media(pixels)['clip_context'][0]
    with torch.no_grad():
        theirs = official_clip(root).visual([pixels[0, :, :1]])[0]
    check(f'CLIP tokens {height}x{width}', ours, theirs)



@pytest.mark.parametrize('variant', list(wo.VARIANTS))
def test_predicted_velocity_is_the_official_wanmodels(folders, tmp_path, variant):
    """The trainer's pipeline layers (adapter.to_layers(), run in sequence) on prepare_inputs' tuple against
    the official WanModel called as the official pipelines call it: x and y as lists of [C, F, H, W], t the
    timestep x 1000 (TI2V: one per token, as textimage2video.py builds it), the unpadded prompt, seq_len the
    token count (here with a few padding tokens more, which the official attention masks out)."""
    official = folders[variant]['transformers']
    adapter = make_adapter(folders[variant]['root'], tmp_path)
    adapter.build_diffusion_model(seed=0)
    two = len(adapter.experts) == 2
    if two:
        assert adapter.experts == ['high_noise', 'low_noise']
        adapter.t_table = torch.tensor([0.3, 0.95], dtype=torch.float64)   # one draw each side of the boundary
    batch = cache_items(adapter, 4, text_step=3)
    inputs, _ = adapter.prepare_inputs(adapter.collate(batch), torch.Generator().manual_seed(3))
    with torch.no_grad():
        got = inputs
        for layer in adapter.to_layers():
            got = layer(got)
    x_t, timestep, text, *extra, expert = inputs
    if two:
        assert 0 < int(expert.sum()) < len(batch)
    cond = extra[0] if adapter.uses_cond else None
    tokens = x_t.shape[2] * (x_t.shape[3] // 2) * (x_t.shape[4] // 2)
    seq_len = tokens + 3
    for i, it in enumerate(batch):
        model = official[adapter.experts[int(expert[i])]]
        t = timestep[i:i + 1]
        if variant == 'wan2.2-ti2v-5b':
            t = t[:, None].expand(1, seq_len)
        if adapter.uses_clip:
            wo.set_clip(model, extra[-1][i:i + 1])
        with torch.no_grad():
            theirs = model([x_t[i]], t, [it['text_embeddings']], seq_len,
                           y=[cond[i]] if cond is not None else None)[0]
        check(f'{variant} velocity {i} ({adapter.experts[int(expert[i])]})', got[i], theirs)
