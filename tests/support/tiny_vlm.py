"""A tiny random-weight Qwen2.5-VL written to a folder the way save_pretrained writes a real one: config,
safetensors weights, a byte-level BPE tokenizer trained here on a few words, the image processor's
config and a chat template. Its captions are noise, but every loading and generation path is real."""

import json
from pathlib import Path

SPECIAL = ['<|endoftext|>', '<|im_start|>', '<|im_end|>', '<|vision_start|>', '<|vision_end|>', '<|image_pad|>',
           '<|video_pad|>']
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
CORPUS = ['a person walks on the beach at sunset', 'describe this video for training a video model',
          'a red circle moves left to right on a blue background', 'camera pans slowly over green hills']


def write_tiny_qwen25_vl(folder, seed=0):
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration,
                              Qwen2VLImageProcessorPil)
    folder = Path(folder)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=320, special_tokens=SPECIAL,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token='<|im_end|>', pad_token='<|endoftext|>')
    tok.chat_template = CHAT_TEMPLATE
    ids = {s: tok.convert_tokens_to_ids(s) for s in SPECIAL}
    cfg = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024,
                         rope_parameters={'rope_type': 'default', 'rope_theta': 10000.0, 'mrope_section': [2, 3, 3]},
                         bos_token_id=ids['<|endoftext|>'], eos_token_id=ids['<|im_end|>'],
                         pad_token_id=ids['<|endoftext|>']),
        vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                           fullatt_block_indexes=[0], window_size=56),
        image_token_id=ids['<|image_pad|>'], video_token_id=ids['<|video_pad|>'],
        vision_start_token_id=ids['<|vision_start|>'], vision_end_token_id=ids['<|vision_end|>'])
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(cfg)
    model.generation_config.eos_token_id = ids['<|im_end|>']
    model.generation_config.pad_token_id = ids['<|endoftext|>']
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    Qwen2VLImageProcessorPil(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16).save_pretrained(folder)
    (folder / 'chat_template.jinja').write_text(CHAT_TEMPLATE, encoding='utf-8')
    (folder / 'processor_config.json').write_text(json.dumps({'processor_class': 'Qwen2_5_VLProcessor'}), encoding='utf-8')
    return folder


def write_tiny_florence2(folder, seed=0):
    """A tiny random-weight Florence-2 (transformers' native class) with its processor: a BART tokenizer
    trained here, a CLIP image processor at 64x64 (2x2 patches after the DaViT strides, + 1 pooled)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (BartTokenizerFast, CLIPImageProcessorPil, Florence2Config,
                              Florence2ForConditionalGeneration, Florence2Processor)
    folder = Path(folder)
    special = ['<s>', '<pad>', '</s>', '<unk>', '<mask>', '<image>']
    bpe = Tokenizer(models.BPE(unk_token='<unk>'))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(CORPUS + ['describe with a paragraph what is shown in the image'],
                            trainers.BpeTrainer(vocab_size=300, special_tokens=special,
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = BartTokenizerFast(tokenizer_object=bpe, bos_token='<s>', eos_token='</s>', pad_token='<pad>',
                            unk_token='<unk>', mask_token='<mask>', extra_special_tokens={'image_token': '<image>'})
    images = CLIPImageProcessorPil(size={'height': 64, 'width': 64}, do_center_crop=False, image_seq_length=5)
    cfg = Florence2Config(
        text_config=dict(vocab_size=len(tok), d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                         decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128,
                         bos_token_id=0, pad_token_id=1, eos_token_id=2, decoder_start_token_id=2),
        vision_config=dict(depths=[1, 1, 1, 1], embed_dim=[8, 16, 16, 32], num_heads=[1, 2, 2, 4], num_groups=[1, 2, 2, 4],
                           window_size=2, projection_dim=32, drop_path_rate=0.0, max_position_embeddings=8,
                           max_temporal_embeddings=2),
        image_token_id=tok.image_token_id)
    torch.manual_seed(seed)
    Florence2ForConditionalGeneration(cfg).save_pretrained(folder)
    Florence2Processor(image_processor=images, tokenizer=tok).save_pretrained(folder)
    return folder
