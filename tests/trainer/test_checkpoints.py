"""Wan checkpoint detection and loading on the tiny models, in the layouts users download."""

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from models.wan import checkpoints as C
from models.wan import keymaps as K
from models.wan import weights as W
from models.wan.keymaps import vae_diffusers_to_official
from models.wan.tiny import COMFY_FILES, COMFY_NAMES
from models.wan.variants import EXPERT_FOLDERS, VARIANTS, variant_of_folder

ROOT = Path(__file__).resolve().parents[2]
ALL = list(VARIANTS)


def ckpt(tiny_models, vid, layout='official', **cfg):
    return C.inspect_checkpoint({'ckpt_path': str(tiny_models / vid / layout), **cfg})


def comfy(tiny_models, vid, key):
    return tiny_models / vid / 'comfy' / COMFY_FILES[key]


def assert_same(a: dict, b: dict, what):
    assert a.keys() == b.keys(), f'{what}: keys differ: {sorted(set(a) ^ set(b))[:5]}'
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), f'{what}: {k} differs'


def assert_nontrivial(state: dict):
    zero = [k for k, v in state.items() if v.is_floating_point() and not v.abs().gt(0).all()]
    assert not zero, f'tensors with zeros: {zero[:5]}'


@pytest.mark.parametrize('layout', ['official', 'diffusers'])
@pytest.mark.parametrize('vid', ALL)
def test_detects_variant(tiny_models, vid, layout):
    assert ckpt(tiny_models, vid, layout).variant.id == vid
    assert variant_of_folder(tiny_models / vid / layout).id == vid


@pytest.mark.parametrize('vid', ALL)
def test_all_layouts_load_identical_weights(tiny_models, vid):
    off, dif = ckpt(tiny_models, vid), ckpt(tiny_models, vid, 'diffusers')
    assert off.variant.experts == tuple(off.transformers) == tuple(dif.transformers)
    for expert, name in COMFY_NAMES[vid].items():
        com = ckpt(tiny_models, vid, transformer_path=str(tiny_models / vid / 'comfy' / 'diffusion_models' / name))
        assert tuple(com.transformers) == (expert,) and com.transformers[expert].kind == 'comfy'
        ref = W.load_transformer(off, expert, torch.float32).state_dict()
        assert_nontrivial(ref)
        assert_same(ref, W.load_transformer(dif, expert, torch.float32).state_dict(), f'{expert} transformer (diffusers)')
        assert_same(ref, W.load_transformer(com, expert, torch.float32).state_dict(), f'{expert} transformer (comfy)')

    ref = W.load_vae(off, torch.float32).state_dict()
    assert_nontrivial(ref)
    assert_same(ref, W.load_vae(dif, torch.float32).state_dict(), 'VAE (diffusers)')
    com = dataclasses.replace(off, vae=C.source_for_file(comfy(tiny_models, vid, f'vae_{off.variant.vae}'), 'vae'))
    assert_same(ref, W.load_vae(com, torch.float32).state_dict(), 'VAE (comfy)')

    _, ref = W.load_text_encoder(off, torch.bfloat16)
    assert_nontrivial(ref.state_dict())
    _, other = W.load_text_encoder(dif, torch.bfloat16)
    assert_same(ref.state_dict(), other.state_dict(), 'UMT5 (diffusers)')
    com = ckpt(tiny_models, vid, llm_path=str(comfy(tiny_models, vid, 'umt5')))
    assert com.text_encoder.kind == 'transformers'
    _, other = W.load_text_encoder(com, torch.bfloat16)
    assert_same(ref.state_dict(), other.state_dict(), 'UMT5 (ComfyUI umt5_xxl)')

    if not off.variant.uses_clip:
        assert W.load_image_encoder(off, torch.float32) is None and dif.image_encoder is None
        return
    ref, _ = W.load_image_encoder(off, torch.float32)
    assert_nontrivial(ref.state_dict())
    assert_same(ref.state_dict(), W.load_image_encoder(dif, torch.float32)[0].state_dict(), 'CLIP (diffusers)')
    com = dataclasses.replace(off, image_encoder=C.source_for_file(comfy(tiny_models, vid, 'clip'), 'image_encoder'))
    assert_same(ref.state_dict(), W.load_image_encoder(com, torch.float32)[0].state_dict(), 'CLIP (clip_vision_h)')
    assert ref.config.image_size == 224 and ref.config.patch_size == 14       # 257 tokens, like ViT-H/14


def test_official_t5_names_in_safetensors_load_as_llm_path(tiny_models, tmp_path):
    """Kijai's wrapper ships the UMT5 encoder as safetensors with the official Wan names."""
    off = ckpt(tiny_models, 'wan2.1-t2v-1.3b')
    state = torch.load(off.text_encoder.files[0], weights_only=True)
    save_file(state, str(tmp_path / 'umt5-xxl-enc-bf16.safetensors'))
    kijai = ckpt(tiny_models, 'wan2.1-t2v-1.3b', llm_path=str(tmp_path / 'umt5-xxl-enc-bf16.safetensors'))
    assert kijai.text_encoder.kind == 'official'
    assert_same(W.load_text_encoder(off, torch.float32)[1].state_dict(),
                W.load_text_encoder(kijai, torch.float32)[1].state_dict(), 'UMT5 (official names, safetensors)')


@pytest.mark.parametrize('vid', ALL)
def test_official_state_dict_round_trip(tiny_models, vid):
    off = ckpt(tiny_models, vid)
    for expert, src in off.transformers.items():
        on_disk = {}
        for f in src.files:
            on_disk.update(load_file(str(f)))
        saved = K.official_state_dict(W.load_transformer(off, expert, torch.float32).state_dict())
        assert_same(on_disk, saved, f'{expert} official round trip')


def test_lora_targets_map_to_official_names(tiny_models):
    off = ckpt(tiny_models, 'wan2.1-i2v-14b')              # has the image cross-attention projections too
    model = W.load_transformer(off, 'main', torch.float32)
    official = set(load_file(str(off.transformers['main'].files[0]))) | set(load_file(str(off.transformers['main'].files[1])))
    linears = [n for n, m in model.blocks[0].named_modules() if isinstance(m, torch.nn.Linear)]
    assert {'attn1.to_q', 'attn2.add_k_proj', 'ffn.net.0.proj', 'ffn.net.2'} <= set(linears)
    for name in linears:
        assert K.diffusers_to_official(f'blocks.0.{name}') + '.weight' in official, name
    assert K.diffusers_to_official('blocks.0.attn1.to_q') == 'blocks.0.self_attn.q'
    assert K.diffusers_to_official('blocks.3.attn2.to_out.0.lora_A.weight') == 'blocks.3.cross_attn.o.lora_A.weight'
    assert K.diffusers_to_official('blocks.0.norm2.weight') == 'blocks.0.norm3.weight'
    assert K.diffusers_to_official('condition_embedder.time_proj.weight') == 'time_projection.1.weight'
    assert K.diffusers_to_official('blocks.0.ffn.net.0.proj') == 'blocks.0.ffn.0'
    with pytest.raises(KeyError):
        K.diffusers_to_official('blocks.0.attn1.processor')


def test_wan21_vae_map_agrees_with_diffusers_conversion(tiny_models):
    """Our diffusers -> official VAE map inverts the conversion diffusers ships for the Wan2.1 VAE."""
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers
    official = torch.load(ckpt(tiny_models, 'wan2.1-t2v-1.3b').vae.files[0], weights_only=True)
    for name in official:
        shipped = next(iter(convert_wan_vae_to_diffusers({name: None})))
        assert vae_diffusers_to_official(shipped, residual=False) == name


@pytest.mark.parametrize('vid', ['wan2.2-t2v-a14b', 'wan2.2-i2v-a14b'])
def test_a14b_expert_selection(tiny_models, vid):
    root = tiny_models / vid / 'official'
    assert tuple(ckpt(tiny_models, vid).transformers) == ('high_noise', 'low_noise')
    assert tuple(ckpt(tiny_models, vid, expert='high_noise').transformers) == ('high_noise',)
    assert tuple(ckpt(tiny_models, vid, 'diffusers', expert='low_noise').transformers) == ('low_noise',)
    low = ckpt(tiny_models, vid, transformer_path=str(root / EXPERT_FOLDERS['low_noise']))
    assert tuple(low.transformers) == ('low_noise',)
    assert low.transformers['low_noise'].files[0].parent == root / 'low_noise_model'
    with pytest.raises(C.CheckpointError, match='low_noise expert'):
        ckpt(tiny_models, vid, transformer_path=str(root / 'low_noise_model'), expert='high_noise')
    with pytest.raises(C.CheckpointError, match='single transformer'):
        ckpt(tiny_models, 'wan2.1-t2v-14b', expert='low_noise')


def test_identity_lists_every_file_the_caches_depend_on(tiny_models):
    ident = ckpt(tiny_models, 'wan2.1-i2v-14b').identity()
    json.dumps(ident)
    assert [p.rsplit('/', 1)[1] for p, _, _ in ident['vae']] == ['Wan2.1_VAE.pth']
    names = [p.rsplit('/', 1)[1] for p, _, _ in ident['text_encoder']]
    assert 'models_t5_umt5-xxl-enc-bf16.pth' in names and 'spiece.model' in names
    assert ident['image_encoder'][0][0].endswith('models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth')
    assert len(ident['transformer']['main']) == 2 and all(size > 0 for _, size, _ in ident['transformer']['main'])


@pytest.fixture
def broken(tiny_models, tmp_path):
    """A private copy of an official folder a test may damage."""
    def make(vid='wan2.1-t2v-14b', layout='official'):
        dst = tmp_path / vid
        shutil.copytree(tiny_models / vid / layout, dst)
        return dst
    return make


def test_missing_files_name_the_expected_path(broken):
    root = broken()
    (root / 'Wan2.1_VAE.pth').unlink()
    with pytest.raises(C.CheckpointError, match=f'{root}/Wan2.1_VAE.pth not found'):
        C.inspect_checkpoint({'ckpt_path': str(root)})


def test_missing_shard_is_named(broken):
    root = broken()
    (root / 'diffusion_pytorch_model-00002-of-00002.safetensors').unlink()
    with pytest.raises(C.CheckpointError, match='diffusion_pytorch_model-00002-of-00002.safetensors not found'):
        C.inspect_checkpoint({'ckpt_path': str(root)})


def test_missing_tokenizer_and_config_are_named(broken):
    root = broken()
    shutil.rmtree(root / 'google' / 'umt5-xxl')
    with pytest.raises(C.CheckpointError, match=f'{root}/google/umt5-xxl not found'):
        C.inspect_checkpoint({'ckpt_path': str(root)})
    (root / 'config.json').unlink()
    with pytest.raises(C.CheckpointError, match=f'{root}/config.json not found'):
        C.inspect_checkpoint({'ckpt_path': str(root)})
    with pytest.raises(C.CheckpointError, match='/nowhere not found'):
        C.inspect_checkpoint({'ckpt_path': '/nowhere'})


def test_missing_t5_is_named_unless_llm_path_replaces_it(tiny_models, broken):
    root = broken('wan2.1-t2v-1.3b')
    (root / 'models_t5_umt5-xxl-enc-bf16.pth').unlink()
    with pytest.raises(C.CheckpointError, match='models_t5_umt5-xxl-enc-bf16.pth not found'):
        C.inspect_checkpoint({'ckpt_path': str(root)})
    llm = comfy(tiny_models, 'wan2.1-t2v-1.3b', 'umt5')
    assert C.inspect_checkpoint({'ckpt_path': str(root), 'llm_path': str(llm)}).text_encoder.files == [llm]


def test_wrong_or_truncated_weights_are_reported(tiny_models, broken, tmp_path):
    root = broken('wan2.1-t2v-1.3b')
    state = load_file(str(root / 'diffusion_pytorch_model.safetensors'))
    state['blocks.0.extra.weight'] = state.pop('blocks.0.self_attn.q.weight')
    save_file(state, str(root / 'diffusion_pytorch_model.safetensors'))
    with pytest.raises(C.CheckpointError, match=r'1 missing: blocks\.0\.attn1\.to_q\.weight(.|\n)*1 unexpected: blocks\.0\.extra\.weight'):
        W.load_transformer(C.inspect_checkpoint({'ckpt_path': str(root)}), 'main', torch.float32)
    (tmp_path / 'bad.safetensors').write_bytes(b'not a safetensors file')
    with pytest.raises(C.CheckpointError, match='bad.safetensors is not a readable safetensors file'):
        C.inspect_checkpoint({'ckpt_path': str(root), 'transformer_path': str(tmp_path / 'bad.safetensors')})
    # A transformer from another model than the folder is refused before any weight is read.
    other = tiny_models / 'wan2.1-i2v-14b' / 'comfy' / 'diffusion_models' / COMFY_NAMES['wan2.1-i2v-14b']['main']
    with pytest.raises(C.CheckpointError, match='same model'):
        C.inspect_checkpoint({'ckpt_path': str(root), 'transformer_path': str(other)})


def test_tokenizer_loads_offline_with_umt5_special_ids(tiny_models):
    from transformers import AutoTokenizer
    for folder in ('official/google/umt5-xxl', 'diffusers/tokenizer'):
        path = tiny_models / 'wan2.1-t2v-1.3b' / folder
        assert {'spiece.model', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'} <= {p.name for p in path.iterdir()}
        tok = AutoTokenizer.from_pretrained(str(path))
        assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
        assert 500 <= len(tok) <= 1000
        ids = tok('a golden fox runs through the misty forest at dawn').input_ids
        assert ids[-1] == 1 and 2 not in ids
        assert tok.decode(ids, skip_special_tokens=True) == 'a golden fox runs through the misty forest at dawn'


def test_diffusers_folder_runs_in_wan_pipeline(tiny_models):
    from diffusers import WanPipeline
    pipe = WanPipeline.from_pretrained(str(tiny_models / 'wan2.1-t2v-1.3b' / 'diffusers'))
    frames = pipe('a red fox runs', negative_prompt='blurry', height=32, width=48, num_frames=5, num_inference_steps=2,
                  guidance_scale=3.0, output_type='np', generator=torch.Generator().manual_seed(0)).frames
    assert frames.shape == (1, 5, 32, 48, 3)
    assert 0.0 <= frames.min() and frames.max() <= 1.0 and frames.std() > 0


def test_dtype_is_applied_per_tensor_as_read(tiny_models):
    off = ckpt(tiny_models, 'wan2.2-ti2v-5b')

    def keep(name):
        return torch.float32 if 'norm' in name or 'scale_shift_table' in name else None

    model = W.load_transformer(off, 'main', torch.bfloat16, dtype_for=keep)
    dtypes = {n: p.dtype for n, p in model.named_parameters()}
    assert dtypes['blocks.0.attn1.to_q.weight'] == torch.bfloat16
    assert dtypes['blocks.0.norm2.weight'] == dtypes['blocks.0.scale_shift_table'] == torch.float32
    assert not any(p.is_meta for p in model.parameters())
    assert W.load_vae(off, torch.bfloat16).dtype == torch.bfloat16


def test_inspecting_a_checkpoint_imports_no_torch():
    """The studio inspects model folders in its own process: models.wan.checkpoints must stay cheap."""
    code = "import models.wan.checkpoints, sys; assert 'torch' not in sys.modules, 'torch was imported'"
    result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
