"""Bucket maths on hand-computed cases: aspect-ratio spacing, nearest bucket, rounding, areas, frames, clips."""

import math

import pytest

from utils.buckets import (BucketPlan, Drop, aspect_ratios, bucket_size, clip_starts, nearest_index,
                           round_to_multiple, video_frame_bucket)
from utils.media import MediaInfo, frames_at_fps


def plan(**cfg):
    base = {'resolutions': [512], 'enable_ar_bucket': True, 'min_ar': 0.5, 'max_ar': 2.0, 'num_ar_buckets': 7,
            'ar_buckets': None, 'frame_buckets': [1, 33], 'size_buckets': None}
    return BucketPlan({**base, **cfg}, size_multiple=16, framerate=16)


def test_aspect_ratios_are_log_spaced_rounded_and_deduplicated():
    ars = aspect_ratios({'enable_ar_bucket': True, 'min_ar': 0.5, 'max_ar': 2.0, 'num_ar_buckets': 5})
    # 0.5 * 2^(k/2): 0.5, 0.7071, 1, 1.4142, 2 (3 decimals)
    assert ars == [0.5, 0.707, 1.0, 1.414, 2.0]
    ratios = [b / a for a, b in zip(ars, ars[1:])]
    assert all(r == pytest.approx(math.sqrt(2), abs=2e-3) for r in ratios)
    assert aspect_ratios({'enable_ar_bucket': True, 'ar_buckets': [[512, 512], [448, 576], 1.0]}) == [0.778, 1.0]
    assert aspect_ratios({'enable_ar_bucket': False, 'min_ar': 0.5, 'max_ar': 2.0, 'num_ar_buckets': 7}) == [1.0]
    assert aspect_ratios({'enable_ar_bucket': True, 'min_ar': 1.0, 'max_ar': 1.0, 'num_ar_buckets': 3}) == [1.0]


def test_nearest_bucket_is_by_log_distance():
    ars = [0.5, 0.707, 1.0, 1.414, 2.0]
    # 1.5: |ln 1.5 - ln 1.414| = 0.059 < |ln 2 - ln 1.5| = 0.288
    assert ars[nearest_index(1.5, ars)] == 1.414
    # 0.6: ln(0.6/0.5) = 0.182 > ln(0.707/0.6) = 0.164
    assert ars[nearest_index(0.6, ars)] == 0.707
    # 1.7 is linearly nearer 1.414 (0.286 vs 0.300) but in log space nearer 2 (0.163 vs 0.184)
    assert ars[nearest_index(1.7, ars)] == 2.0
    # an exact tie in log space (2 between 1 and 4) goes to the first (narrower) bucket
    assert nearest_index(2.0, [1.0, 4.0]) == 0


def test_rounding_to_the_size_multiple():
    assert round_to_multiple(724.077, 16) == 720     # 45.25 -> 45
    assert round_to_multiple(362.039, 16) == 368     # 22.63 -> 23
    assert round_to_multiple(24, 16) == 32           # a half rounds up
    assert round_to_multiple(5, 16) == 16            # never below one step
    assert round_to_multiple(724.077, 32) == 736     # 22.63 -> 23
    assert round_to_multiple(362.039, 32) == 352     # 11.31 -> 11


@pytest.mark.parametrize('area, ar, multiple, expected', [
    (512 * 512, 1.0, 16, (512, 512)),
    (512 * 512, 2.0, 16, (720, 368)),        # sqrt(524288) = 724.08, sqrt(131072) = 362.04
    (512 * 512, 0.5, 16, (368, 720)),
    (512 * 512, 2.0, 32, (736, 352)),
    (1280 * 720, 1.778, 16, (1280, 720)),    # w = sqrt(921600 * 1.778) = 1280.09, h = 719.96
    (1280 * 720, 1.778, 32, (1280, 704)),    # h / 32 = 22.499 -> 22
    (64 * 64, 2.0, 16, (96, 48)),            # 90.5 -> 96, 45.25 -> 48
])
def test_bucket_size_keeps_area_at_the_aspect_ratio(area, ar, multiple, expected):
    w, h = bucket_size(area, ar, multiple)
    assert (w, h) == expected
    assert w % multiple == 0 and h % multiple == 0
    # rounding moves each side by at most half a step
    assert abs(w - math.sqrt(area * ar)) <= multiple / 2 and abs(h - math.sqrt(area / ar)) <= multiple / 2


def test_frame_bucket_after_resampling_to_the_model_rate():
    # 45 frames at 30 fps = 1.5 s = 24 frames at 16 fps -> largest bucket <= 24 is 17
    info = MediaInfo('v.mp4', 'video', 64, 64, 45, 30.0, 1.5)
    n = frames_at_fps(info, 16)
    assert n == 24
    assert video_frame_bucket(n, [1, 9, 17, 33]) == 17
    # 100 frames at 24 fps = 4.1667 s = 66 frames at 16 fps -> 65
    assert frames_at_fps(MediaInfo('v.mp4', 'video', 64, 64, 100, 24.0, 100 / 24), 16) == 66
    assert video_frame_bucket(66, [1, 33, 65, 81]) == 65
    # exactly a bucket length fits that bucket; at 24 fps (Wan2.2 5B) 1.5 s is 36 frames -> 33
    assert video_frame_bucket(33, [1, 33]) == 33
    assert frames_at_fps(info, 24) == 36
    assert frames_at_fps(MediaInfo('i.png', 'image', 64, 64, 1, None, None), 16) == 1


def test_videos_never_go_to_the_image_bucket_and_images_always_do():
    p = plan(frame_buckets=[9, 17])
    assert p.frame_buckets == [1, 9, 17]                    # the image bucket is always there
    assert [a.bucket for a in p.assign(512, 512, 'image', 1)] == [(512, 512, 1)]
    assert [a.bucket for a in p.assign(512, 512, 'video', 16)] == [(512, 512, 9)]
    with pytest.raises(Drop, match=r'^too short: 8 frames at 16 fps, smallest frame bucket is 9$'):
        p.assign(512, 512, 'video', 8)
    with pytest.raises(Drop, match='no video frame bucket'):
        plan(frame_buckets=[1]).assign(512, 512, 'video', 100)


def test_assignment_per_resolution_and_ar_bucket():
    p = plan(resolutions=[256, 512], num_ar_buckets=5)
    got = p.assign(1920, 1080, 'video', 40)                # AR 1.778 -> nearest 2.0 (0.118 vs 0.229 in log)
    assert [(a.bucket, a.resolution) for a in got] == [((368, 176, 33), '256'), ((720, 368, 33), '512')]
    # [w, h] resolutions are areas too; two resolutions giving the same size are merged
    got = plan(resolutions=[[640, 360], 480]).assign(100, 100, 'image', 1)
    assert [a.bucket for a in got] == [(480, 480, 1)]
    # AR bucketing off: everything is square
    assert [a.bucket for a in plan(enable_ar_bucket=False).assign(1920, 1080, 'image', 1)] == [(512, 512, 1)]
    # Wan2.2 ti2v-5B: sides in steps of 32
    p32 = BucketPlan({'resolutions': [512], 'enable_ar_bucket': True, 'ar_buckets': [2.0], 'frame_buckets': [1]}, 32, 24)
    assert p32.assign(200, 100, 'image', 1)[0].bucket == (736, 352, 1)


def test_explicit_size_buckets():
    p = plan(size_buckets=[[512, 512, 1], [768, 432, 33], [432, 768, 33], [768, 432, 17], [512, 512, 33]])
    assert p.assign(1920, 1080, 'video', 40)[0].bucket == (768, 432, 33)
    assert p.assign(1920, 1080, 'video', 20)[0].bucket == (768, 432, 17)
    assert p.assign(1080, 1920, 'video', 40)[0].bucket == (432, 768, 33)
    assert p.assign(1920, 1080, 'image', 1)[0].bucket == (512, 512, 1)     # the only image bucket
    with pytest.raises(Drop, match='too short: 10 frames at 16 fps, smallest frame bucket is 17'):
        p.assign(1920, 1080, 'video', 10)
    with pytest.raises(Drop, match='no image bucket'):
        plan(size_buckets=[[512, 512, 33]]).assign(100, 100, 'image', 1)


@pytest.mark.parametrize('n, f, beginning, middle, overlapping', [
    (40, 17, [0], [11], [0, 12, 23]),          # ceil(40/17) = 3 clips over span 23: 0, 11.5 -> 12, 23
    (34, 17, [0], [8], [0, 17]),               # exactly two clips, no overlap
    (17, 17, [0], [0], [0]),
    (18, 17, [0], [0], [0, 1]),                # one frame too many needs a second clip
    (100, 33, [0], [33], [0, 22, 45, 67]),     # 4 clips over span 67: 0, 22.33, 44.67, 67
])
def test_clip_starts(n, f, beginning, middle, overlapping):
    assert clip_starts(n, f, 'single_beginning') == beginning
    assert clip_starts(n, f, 'single_middle') == middle
    starts = clip_starts(n, f, 'multiple_overlapping')
    assert starts == overlapping
    assert len(starts) == math.ceil(n / f)                                    # the fewest clips
    covered = set().union(*(range(s, s + f) for s in starts))
    assert covered == set(range(n))                                            # ... that cover every frame
    assert all(0 <= s <= n - f for s in starts)
