"""Parameter-name maps between the official Wan checkpoints and the modules diffusers / transformers ship.

diffusers ships the official -> diffusers maps for the transformer and the Wan2.1 VAE
(`convert_wan_transformer_to_diffusers`, `convert_wan_vae_to_diffusers`); the checkpoint loader uses
those. This file holds what is not shipped:

- transformer, diffusers -> official (`diffusers_to_official`): saving full fine-tunes and LoRAs in the
  names ComfyUI and the Wan code read;
- VAE, diffusers -> official for both VAEs (`vae_diffusers_to_official`): the Wan2.2 VAE has no shipped
  map, so loading it inverts this one;
- UMT5 encoder, official Wan T5 <-> transformers `UMT5EncoderModel` (`T5_NAMES`);
- CLIP ViT-H/14 visual tower, open-clip style Wan `.pth` <-> transformers `CLIPVisionModel`, splitting
  and fusing the `to_qkv` projection (`clip_official_to_transformers`, `clip_transformers_to_official`).

docs/checkpoint-formats.md has the same tables in prose.
"""

import re

import torch


# --------------------------------------------------------------------------------------------
# Name tables: 'a.{i}.b' <-> 'c.{i}.d', matched as whole names in either direction
# --------------------------------------------------------------------------------------------

class NameTable:
    """Bidirectional rename of dotted names with `{i}` standing for one integer."""

    def __init__(self, pairs):
        self.pairs = list(pairs)
        self._fwd = [(self._regex(a), b) for a, b in self.pairs]
        self._bwd = [(self._regex(b), a) for a, b in self.pairs]

    @staticmethod
    def _regex(pattern):
        return re.compile('^' + re.escape(pattern).replace(r'\{i\}', r'(?P<i>\d+)') + '$')

    @staticmethod
    def _apply(rules, name):
        for regex, target in rules:
            m = regex.match(name)
            if m:
                return target.replace('{i}', m.group('i')) if '{i}' in target else target
        return None

    def forward(self, name):
        """Left name -> right name, or None if no rule matches."""
        return self._apply(self._fwd, name)

    def backward(self, name):
        """Right name -> left name, or None if no rule matches."""
        return self._apply(self._bwd, name)


# --------------------------------------------------------------------------------------------
# Transformer: diffusers WanTransformer3DModel -> official WanModel
# --------------------------------------------------------------------------------------------

# Module paths (a parameter name is a module path plus '.weight' / '.bias' / nothing for bare tensors).
_TRANSFORMER_TOP = {
    'patch_embedding': 'patch_embedding',
    'condition_embedder.time_embedder.linear_1': 'time_embedding.0',
    'condition_embedder.time_embedder.linear_2': 'time_embedding.2',
    'condition_embedder.time_proj': 'time_projection.1',
    'condition_embedder.text_embedder.linear_1': 'text_embedding.0',
    'condition_embedder.text_embedder.linear_2': 'text_embedding.2',
    'condition_embedder.image_embedder.norm1': 'img_emb.proj.0',
    'condition_embedder.image_embedder.ff.net.0.proj': 'img_emb.proj.1',
    'condition_embedder.image_embedder.ff.net.2': 'img_emb.proj.3',
    'condition_embedder.image_embedder.norm2': 'img_emb.proj.4',
    'condition_embedder.image_embedder.pos_embed': 'img_emb.emb_pos',
    'norm_out': 'head.norm',
    'proj_out': 'head.head',
    'scale_shift_table': 'head.modulation',
}
# Inside blocks.N. The official block names its cross-attention norm norm3 and has no-affine norm1/norm2;
# diffusers calls the cross-attention norm norm2 and the no-affine pre-FFN norm norm3.
_TRANSFORMER_BLOCK = {
    'attn1': 'self_attn',
    'attn2': 'cross_attn',
    'norm1': 'norm1',
    'norm2': 'norm3',
    'norm3': 'norm2',
    'ffn.net.0.proj': 'ffn.0',
    'ffn.net.2': 'ffn.2',
    'scale_shift_table': 'modulation',
}
_TRANSFORMER_ATTN = {
    'to_q': 'q',
    'to_k': 'k',
    'to_v': 'v',
    'to_out.0': 'o',
    'norm_q': 'norm_q',
    'norm_k': 'norm_k',
    'add_k_proj': 'k_img',
    'add_v_proj': 'v_img',
    'norm_added_k': 'norm_k_img',
}


def _match_prefix(name, table):
    """Longest key of `table` that is `name` or a dotted prefix of it -> (mapped, rest) or None."""
    for key in sorted(table, key=len, reverse=True):
        if name == key:
            return table[key], ''
        if name.startswith(key + '.'):
            return table[key], name[len(key):]
    return None


def diffusers_to_official(name: str) -> str:
    """A diffusers transformer parameter or module name -> the official Wan name.

    Works on module paths ('blocks.0.attn1.to_q' -> 'blocks.0.self_attn.q') and on anything below them
    ('...to_q.weight', '...to_q.lora_A.weight'), so LoRA names map with the same call.
    """
    m = re.match(r'^blocks\.(\d+)\.(.+)$', name)
    if m:
        index, inner = m.groups()
        attn = re.match(r'^(attn[12])\.(.+)$', inner)
        if attn:
            hit = _match_prefix(attn.group(2), _TRANSFORMER_ATTN)
            if hit:
                return f'blocks.{index}.{_TRANSFORMER_BLOCK[attn.group(1)]}.{hit[0]}{hit[1]}'
        elif (hit := _match_prefix(inner, _TRANSFORMER_BLOCK)):
            return f'blocks.{index}.{hit[0]}{hit[1]}'
        elif inner in ('attn1', 'attn2'):
            return f'blocks.{index}.{_TRANSFORMER_BLOCK[inner]}'
    elif (hit := _match_prefix(name, _TRANSFORMER_TOP)):
        return hit[0] + hit[1]
    raise KeyError(f'{name!r} is not a Wan transformer name this map knows')


def official_state_dict(state_dict: dict) -> dict:
    """A whole diffusers-named transformer state dict -> official names (same tensors, no copies)."""
    return {diffusers_to_official(k): v for k, v in state_dict.items()}


def official_transformer_config(model_type: str, config: dict) -> dict:
    """WanTransformer3DModel config (dict) -> the official config.json ('t2v' | 'i2v' | 'ti2v'). Text and
    image widths are not in it: the loader reads them from the weights' shapes."""
    return {'_class_name': 'WanModel', '_diffusers_version': '0.30.0',
            'dim': config['num_attention_heads'] * config['attention_head_dim'], 'eps': config['eps'],
            'ffn_dim': config['ffn_dim'], 'freq_dim': config['freq_dim'], 'in_dim': config['in_channels'],
            'model_type': model_type, 'num_heads': config['num_attention_heads'], 'num_layers': config['num_layers'],
            'out_dim': config['out_channels'], 'text_len': 512}


# --------------------------------------------------------------------------------------------
# VAE: diffusers AutoencoderKLWan -> official WanVAE_ (Wan2.1: flat block lists; Wan2.2: nested)
# --------------------------------------------------------------------------------------------

_VAE_RESNET = {
    'norm1': 'residual.0',
    'conv1': 'residual.2',
    'norm2': 'residual.3',
    'conv2': 'residual.6',
    'conv_shortcut': 'shortcut',
}


def _vae_resnet(inner):
    hit = _match_prefix(inner, _VAE_RESNET)
    if not hit:
        raise KeyError(inner)
    return hit[0] + hit[1]


def vae_diffusers_to_official(name: str, *, residual: bool, num_res_blocks: int = 2) -> str:
    """A diffusers VAE parameter name -> the official Wan VAE name.

    residual=False is the Wan2.1 VAE (encoder/decoder blocks in one flat Sequential), True the Wan2.2 VAE
    (`is_residual`: each level is a Down/Up_ResidualBlock holding its own Sequential).
    """
    rules = [
        (r'^(encoder|decoder)\.conv_in\.(.+)$', lambda m: f'{m[1]}.conv1.{m[2]}'),
        (r'^(encoder|decoder)\.norm_out\.(.+)$', lambda m: f'{m[1]}.head.0.{m[2]}'),
        (r'^(encoder|decoder)\.conv_out\.(.+)$', lambda m: f'{m[1]}.head.2.{m[2]}'),
        (r'^quant_conv\.(.+)$', lambda m: f'conv1.{m[1]}'),
        (r'^post_quant_conv\.(.+)$', lambda m: f'conv2.{m[1]}'),
        (r'^(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)$',
         lambda m: f'{m[1]}.middle.{2 * int(m[2])}.{_vae_resnet(m[3])}'),
        (r'^(encoder|decoder)\.mid_block\.attentions\.0\.(.+)$', lambda m: f'{m[1]}.middle.1.{m[2]}'),
    ]
    if residual:
        rules += [
            (r'^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$',
             lambda m: f'encoder.downsamples.{m[1]}.downsamples.{m[2]}.{_vae_resnet(m[3])}'),
            (r'^encoder\.down_blocks\.(\d+)\.downsampler\.(.+)$',
             lambda m: f'encoder.downsamples.{m[1]}.downsamples.{num_res_blocks}.{m[2]}'),
            (r'^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$',
             lambda m: f'decoder.upsamples.{m[1]}.upsamples.{m[2]}.{_vae_resnet(m[3])}'),
            (r'^decoder\.up_blocks\.(\d+)\.upsampler\.(.+)$',
             lambda m: f'decoder.upsamples.{m[1]}.upsamples.{num_res_blocks + 1}.{m[2]}'),
        ]
    else:
        per_level = num_res_blocks + 2      # decoder: num_res_blocks + 1 resnets, then one upsampler
        rules += [
            (r'^encoder\.down_blocks\.(\d+)\.((?:resample|time_conv)\..+)$',
             lambda m: f'encoder.downsamples.{m[1]}.{m[2]}'),
            (r'^encoder\.down_blocks\.(\d+)\.(.+)$',
             lambda m: f'encoder.downsamples.{m[1]}.{_vae_resnet(m[2])}'),
            (r'^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$',
             lambda m: f'decoder.upsamples.{int(m[1]) * per_level + int(m[2])}.{_vae_resnet(m[3])}'),
            (r'^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.+)$',
             lambda m: f'decoder.upsamples.{int(m[1]) * per_level + num_res_blocks + 1}.{m[2]}'),
        ]
    for pattern, build in rules:
        m = re.match(pattern, name)
        if m:
            try:
                return build(m)
            except KeyError:
                break
    raise KeyError(f'{name!r} is not a Wan VAE name this map knows')


# --------------------------------------------------------------------------------------------
# UMT5 encoder: official Wan T5Encoder (left) <-> transformers UMT5EncoderModel (right)
# --------------------------------------------------------------------------------------------

T5_NAMES = NameTable([
    ('token_embedding.weight', 'shared.weight'),
    ('norm.weight', 'encoder.final_layer_norm.weight'),
    ('blocks.{i}.norm1.weight', 'encoder.block.{i}.layer.0.layer_norm.weight'),
    ('blocks.{i}.attn.q.weight', 'encoder.block.{i}.layer.0.SelfAttention.q.weight'),
    ('blocks.{i}.attn.k.weight', 'encoder.block.{i}.layer.0.SelfAttention.k.weight'),
    ('blocks.{i}.attn.v.weight', 'encoder.block.{i}.layer.0.SelfAttention.v.weight'),
    ('blocks.{i}.attn.o.weight', 'encoder.block.{i}.layer.0.SelfAttention.o.weight'),
    ('blocks.{i}.pos_embedding.embedding.weight', 'encoder.block.{i}.layer.0.SelfAttention.relative_attention_bias.weight'),
    ('blocks.{i}.norm2.weight', 'encoder.block.{i}.layer.1.layer_norm.weight'),
    ('blocks.{i}.ffn.gate.0.weight', 'encoder.block.{i}.layer.1.DenseReluDense.wi_0.weight'),
    ('blocks.{i}.ffn.fc1.weight', 'encoder.block.{i}.layer.1.DenseReluDense.wi_1.weight'),
    ('blocks.{i}.ffn.fc2.weight', 'encoder.block.{i}.layer.1.DenseReluDense.wo.weight'),
])


# --------------------------------------------------------------------------------------------
# CLIP visual tower: official open-clip style (left) <-> transformers CLIPVisionModel (right, no prefix)
# --------------------------------------------------------------------------------------------

CLIP_NAMES = NameTable([
    ('visual.patch_embedding.weight', 'embeddings.patch_embedding.weight'),
    ('visual.pre_norm.weight', 'pre_layrnorm.weight'),
    ('visual.pre_norm.bias', 'pre_layrnorm.bias'),
    ('visual.post_norm.weight', 'post_layernorm.weight'),
    ('visual.post_norm.bias', 'post_layernorm.bias'),
    ('visual.transformer.{i}.norm1.weight', 'encoder.layers.{i}.layer_norm1.weight'),
    ('visual.transformer.{i}.norm1.bias', 'encoder.layers.{i}.layer_norm1.bias'),
    ('visual.transformer.{i}.norm2.weight', 'encoder.layers.{i}.layer_norm2.weight'),
    ('visual.transformer.{i}.norm2.bias', 'encoder.layers.{i}.layer_norm2.bias'),
    ('visual.transformer.{i}.attn.proj.weight', 'encoder.layers.{i}.self_attn.out_proj.weight'),
    ('visual.transformer.{i}.attn.proj.bias', 'encoder.layers.{i}.self_attn.out_proj.bias'),
    ('visual.transformer.{i}.mlp.0.weight', 'encoder.layers.{i}.mlp.fc1.weight'),
    ('visual.transformer.{i}.mlp.0.bias', 'encoder.layers.{i}.mlp.fc1.bias'),
    ('visual.transformer.{i}.mlp.2.weight', 'encoder.layers.{i}.mlp.fc2.weight'),
    ('visual.transformer.{i}.mlp.2.bias', 'encoder.layers.{i}.mlp.fc2.bias'),
])
# Parts of the official file the image encoder does not use: the XLM-RoBERTa text tower, the logit scale
# and the visual projection head (Wan takes the penultimate block's tokens, before any head).
CLIP_OFFICIAL_UNUSED = ('textual.', 'log_scale', 'visual.head')
# Parts of a transformers-named file (ComfyUI clip_vision_h) a CLIPVisionModel does not hold.
CLIP_TRANSFORMERS_UNUSED = ('visual_projection.', 'embeddings.position_ids')


def clip_official_to_transformers(state_dict: dict) -> tuple[dict, list]:
    """Official CLIP `.pth` tensors -> CLIPVisionModel names (without 'vision_model.'); returns (mapped, unknown keys)."""
    out, unknown = {}, []
    for name, tensor in state_dict.items():
        if name.startswith(CLIP_OFFICIAL_UNUSED):
            continue
        qkv = re.match(r'^visual\.transformer\.(\d+)\.attn\.to_qkv\.(weight|bias)$', name)
        if qkv:
            layer, kind = qkv.groups()
            for part, chunk in zip('qkv', tensor.chunk(3, dim=0)):
                out[f'encoder.layers.{layer}.self_attn.{part}_proj.{kind}'] = chunk
        elif name == 'visual.cls_embedding':
            out['embeddings.class_embedding'] = tensor.reshape(-1)
        elif name == 'visual.pos_embedding':
            out['embeddings.position_embedding.weight'] = tensor.reshape(tensor.shape[-2], tensor.shape[-1])
        elif (target := CLIP_NAMES.forward(name)):
            out[target] = tensor
        else:
            unknown.append(name)
    return out, unknown


def clip_transformers_to_official(state_dict: dict) -> dict:
    """CLIPVisionModel tensors (names without 'vision_model.') -> the official `visual.*` tensors, fusing q/k/v."""
    out = {}
    for name, tensor in state_dict.items():
        qkv = re.match(r'^encoder\.layers\.(\d+)\.self_attn\.q_proj\.(weight|bias)$', name)
        if qkv:
            layer, kind = qkv.groups()
            parts = [state_dict[f'encoder.layers.{layer}.self_attn.{p}_proj.{kind}'] for p in 'qkv']
            out[f'visual.transformer.{layer}.attn.to_qkv.{kind}'] = torch.cat(parts, dim=0)
        elif re.match(r'^encoder\.layers\.\d+\.self_attn\.[kv]_proj\.', name) or name.startswith(CLIP_TRANSFORMERS_UNUSED):
            continue
        elif name == 'embeddings.class_embedding':
            out['visual.cls_embedding'] = tensor.reshape(1, 1, -1)
        elif name == 'embeddings.position_embedding.weight':
            out['visual.pos_embedding'] = tensor.unsqueeze(0)
        else:
            target = CLIP_NAMES.backward(name)
            if target is None:
                raise KeyError(f'{name!r} is not a CLIP vision name this map knows')
            out[target] = tensor
    return out
