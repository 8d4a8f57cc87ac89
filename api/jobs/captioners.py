"""Vision-language models that write captions, loaded through transformers from a local folder.

    cap = load_captioner('/models/Qwen2.5-VL-7B-Instruct', device='cuda', dtype=torch.bfloat16)
    cap.caption([frame0, frame1, frame2, frame3], 'Describe this video ...', max_new_tokens=160)

A registry keyed by the folder's config.json `model_type`:
- chat models (qwen2_vl, qwen2_5_vl, qwen3_vl, qwen3_vl_moe): the frames go in as images of one user
  turn with the instruction, through the folder's own processor and chat template;
- florence2 (transformers' native Florence-2): one frame (the middle one) and a task token
  (<MORE_DETAILED_CAPTION> unless the instruction is itself a task token).
The folder is what `save_pretrained` writes (or a hub snapshot): config.json, weights (*.safetensors),
tokenizer files, preprocessor_config.json and a chat template. Nothing is downloaded (local files only).
"""

import json
from pathlib import Path

CHAT_TYPES = ('qwen2_vl', 'qwen2_5_vl', 'qwen3_vl', 'qwen3_vl_moe')
FLORENCE_TASK = '<MORE_DETAILED_CAPTION>'


class CaptionerError(Exception):
    """The folder does not hold a model we can caption with; the message says what was found."""


def model_type(path):
    cfg = Path(path) / 'config.json'
    try:
        return json.loads(cfg.read_text(encoding='utf-8')).get('model_type')
    except FileNotFoundError:
        raise CaptionerError(f'{path}: no config.json (name the folder save_pretrained wrote)') from None
    except (OSError, ValueError) as e:
        raise CaptionerError(f'{cfg}: cannot read ({e})') from None


def load_processor(path):
    """The folder's processor. Without torchvision, transformers cannot build the video half of the
    Qwen-VL processors; frames go in as images anyway, so an images-only processor of the same class
    (image processor + tokenizer + chat template) is built instead."""
    from transformers import AutoProcessor
    try:
        return AutoProcessor.from_pretrained(path, local_files_only=True)
    except ImportError as e:
        if 'torchvision' not in str(e).lower():
            raise
    import transformers
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES
    base = getattr(transformers, PROCESSOR_MAPPING_NAMES[model_type(path)])

    class ImagesOnly(base):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            super().__init__(image_processor, tokenizer, chat_template=chat_template, **kwargs)

    return ImagesOnly.from_pretrained(path, local_files_only=True)


def _load_model(path, device, dtype):
    from transformers import AutoModelForImageTextToText
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype, local_files_only=True)
    return model.to(device).eval()


class ChatCaptioner:
    """Qwen-VL family: frames as images of one chat turn, greedy decoding."""
    frames_wanted = None            # as many as the job samples

    def __init__(self, path, device, dtype):
        self.processor = load_processor(path)
        self.model = _load_model(path, device, dtype)
        self.device = device

    def caption(self, images, prompt, max_new_tokens):
        import torch
        content = [{'type': 'image'} for _ in images] + [{'type': 'text', 'text': prompt}]
        text = self.processor.apply_chat_template([{'role': 'user', 'content': content}],
                                                  add_generation_prompt=True, tokenize=False)
        inputs = self.processor(text=[text], images=images, return_tensors='pt').to(self.device)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        new = out[:, inputs['input_ids'].shape[1]:]
        return self.processor.batch_decode(new, skip_special_tokens=True)[0]


class FlorenceCaptioner:
    """Florence-2: one image (the middle frame) and a task token."""
    frames_wanted = 1

    def __init__(self, path, device, dtype):
        self.processor = load_processor(path)
        self.model = _load_model(path, device, dtype)
        self.device, self.dtype = device, dtype

    def caption(self, images, prompt, max_new_tokens):
        import torch
        task = prompt.strip() if prompt.strip().startswith('<') and prompt.strip().endswith('>') else FLORENCE_TASK
        image = images[len(images) // 2]
        inputs = self.processor(text=task, images=image, return_tensors='pt').to(self.device)
        if 'pixel_values' in inputs:
            inputs['pixel_values'] = inputs['pixel_values'].to(self.dtype)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, num_beams=3)
        text = self.processor.batch_decode(out, skip_special_tokens=True)[0]
        return text.replace(task, '')


CAPTIONERS = {**{t: ChatCaptioner for t in CHAT_TYPES}, 'florence2': FlorenceCaptioner}


def check_folder(path):
    """The model type of a captioning model folder, or CaptionerError saying why it cannot caption."""
    kind = model_type(path)
    if kind not in CAPTIONERS:
        raise CaptionerError(f'{path}: model_type {kind!r} cannot caption here; supported: {", ".join(CAPTIONERS)}')
    return kind


def load_captioner(path, device, dtype):
    return CAPTIONERS[check_folder(path)](path, device, dtype)
