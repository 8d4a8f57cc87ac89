"""The settings of a test run (or of a task's previews), checked and completed with defaults.

    s = settings_from(body, variant_id='wan2.1-t2v-1.3b', mode='gpu', gallery=g)
    s['inputs']   -> [{'prompt', 'image', 'image_path', 'width', 'height'}]   (images x prompts)

Every refusal names the field and the value. Defaults come from the official Wan sampling settings of
the variant on a GPU machine, and from small sizes, few frames and few steps on a CPU-only machine
(where only the tiny demo model is practical).
"""

from models.wan.inference import (
    DEFAULTS,
    NEGATIVE_PROMPT,
    SUPPORTED_AREAS,
    GenerationError,
    check_frames,
    check_size,
    propose_size,
)
from models.wan.variants import VARIANTS

from ..errors import BadRequest, Invalid

MAX_PROMPTS = 32                  # prompts in one run
MAX_PROMPT_CHARS = 2000
MAX_IMAGES = 32
MAX_STRENGTHS = 8
MAX_CELLS = 256                   # videos in one run
BACKENDS = ('embedded', 'comfyui')
CPU_DEFAULTS = dict(steps=4, frames=9, area='tiny')   # a CPU-only studio: the tiny model in seconds
RANGES = {                        # field: (min, max)
    'steps': (1, 200),
    'frames': (1, 257),
    'guidance': (0.0, 30.0),
    'guidance_low': (0.0, 30.0),
    'shift': (0.05, 50.0),
    'strength': (-4.0, 4.0),
    'seed': (0, 2 ** 63 - 1),
    'size': (16, 4096),
}


def _number(body, name, kind, default):
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not isinstance(v, int)):
        raise BadRequest(f'{name} = {v!r} must be {"a whole number" if kind is int else "a number"}', field=name)
    lo, hi = RANGES[name]
    if not lo <= v <= hi:
        raise BadRequest(f'{name} = {v!r} must be between {lo} and {hi}', field=name)
    return kind(v)


def text_list(body, name, limit, chars=None):
    v = body.get(name)
    if v is None:
        return None
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise BadRequest(f'{name} must be a list of text', field=name)
    if len(v) > limit:
        raise BadRequest(f'{name}: at most {limit} entries ({len(v)} given)', field=name)
    if chars and any(len(x) > chars for x in v):
        raise BadRequest(f'{name}: each entry at most {chars} characters', field=name)
    return list(v)


def _strengths(body):
    v = body.get('strengths')
    if v is None:
        return [1.0]
    if not isinstance(v, list) or not v or len(v) > MAX_STRENGTHS:
        raise BadRequest(f'strengths must be a list of 1 to {MAX_STRENGTHS} numbers', field='strengths')
    lo, hi = RANGES['strength']
    for x in v:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not lo <= x <= hi:
            raise BadRequest(f'strengths: {x!r} must be a number between {lo} and {hi}', field='strengths')
    return list(dict.fromkeys(float(x) for x in v))


def _size(body, variant_id):
    w, h = body.get('width'), body.get('height')
    if w is None and h is None:
        return None
    if w is None or h is None:
        raise BadRequest('give width and height together (or neither: sizes are proposed per image)',
                         field='width' if w is None else 'height')
    try:
        check_size(variant_id, w, h)
    except GenerationError as e:
        raise BadRequest(str(e), field='width' if 'width' in str(e) else 'height') from None
    if not RANGES['size'][0] <= max(w, h) <= RANGES['size'][1]:
        raise BadRequest(f'size {w}x{h} is larger than {RANGES["size"][1]} pixels', field='width')
    return w, h


def defaults(variant_id, mode):
    """The settings a run gets when the request leaves them out."""
    d = dict(DEFAULTS[variant_id])
    d['area'] = SUPPORTED_AREAS[variant_id][0]
    if mode == 'cpu':
        d.update(CPU_DEFAULTS)
    return d


def settings_from(body, *, variant_id, mode, gallery, prompts=None, images=None):
    """Checked settings of a run. `prompts` / `images` stand in when the body has none (the task's own)."""
    if variant_id not in VARIANTS:
        raise Invalid(f'model variant {variant_id!r} is not supported', field='model')
    variant = VARIANTS[variant_id]
    d = defaults(variant_id, mode)
    prompts = text_list(body, 'prompts', MAX_PROMPTS, MAX_PROMPT_CHARS) if 'prompts' in body else prompts
    images = text_list(body, 'images', MAX_IMAGES) if 'images' in body else images
    prompts, images = [p.strip() for p in (prompts or []) if p.strip()], list(dict.fromkeys(images or []))
    if variant.task == 't2v' and images:
        raise Invalid(f'{variant_id} makes videos from text only: leave the test images out', field='images')
    if variant.task == 'i2v' and not images:
        raise Invalid(f'{variant_id} makes videos from a first frame: choose test images', field='images')
    if not prompts and not images:
        raise Invalid('give at least one test prompt (or a test image)', field='prompts')
    frames = _number(body, 'frames', int, d['frames'])
    try:
        check_frames(frames)
    except GenerationError as e:
        raise BadRequest(str(e), field='frames') from None
    area = body.get('area') or d['area']
    if area not in SUPPORTED_AREAS[variant_id] + ('tiny',):
        raise BadRequest(f'area {area!r}: {variant_id} supports {", ".join(SUPPORTED_AREAS[variant_id])}', field='area')
    fixed = _size(body, variant_id)
    inputs = [make_input(prompt, image, gallery=gallery, variant=variant, fixed=fixed, area=area)
              for image in images or [None] for prompt in prompts or ['']]
    negative = body.get('negative_prompt')
    if negative is not None and (not isinstance(negative, str) or len(negative) > MAX_PROMPT_CHARS):
        raise BadRequest(f'negative_prompt must be text of at most {MAX_PROMPT_CHARS} characters', field='negative_prompt')
    backend = body.get('backend') or 'embedded'
    if backend not in BACKENDS:
        raise BadRequest(f'backend {backend!r} must be one of {", ".join(BACKENDS)}', field='backend')
    return {
        'backend': backend,
        'prompts': prompts,
        'images': images,
        'inputs': inputs,
        'negative_prompt': NEGATIVE_PROMPT if negative is None else negative,
        'strengths': _strengths(body),
        'seed': _number(body, 'seed', int, 42),
        'steps': _number(body, 'steps', int, d['steps']),
        'guidance': _number(body, 'guidance', float, d['guidance']),
        'guidance_low': _number(body, 'guidance_low', float, d['guidance_low']) if variant.two_experts else None,
        'shift': _number(body, 'shift', float, d['shift']),
        'frames': frames,
        'fps': variant.framerate,
        'width': fixed[0] if fixed else None,
        'height': fixed[1] if fixed else None,
        'area': None if fixed else area,
    }


def make_input(prompt, image, *, gallery, variant, fixed, area):
    """One input of a run: a prompt, an optional gallery image, and the size it is made at (fixed, else proposed
    from the image, else from 832x480, at `area`)."""
    path = gallery.image_path(image, 'images') if image else None
    if fixed:
        w, h = fixed
    elif path:
        w, h = propose_size(*gallery.size_of(path), variant.size_multiple, area)
    else:
        w, h = propose_size(832, 480, variant.size_multiple, area)
    return {'prompt': prompt, 'image': image, 'image_path': str(path) if path else None, 'width': w, 'height': h}


def count_cells(rows, inputs, strengths, with_base, limit=MAX_CELLS):
    n = rows * len(inputs) * len(strengths) + (len(inputs) if with_base else 0)
    if n > limit:
        raise Invalid(f'this run would make {n} videos; at most {limit} (fewer LoRAs, inputs or strengths)',
                      field='loras')
    if n == 0:
        raise Invalid('nothing to generate: choose LoRAs (or the base model)', field='loras')
    return n
