"""A clip in chunks (nst.video.chunks): the ranges, the cross-fade at the joins, which frame steps a join
touches, and the stub network (a fixed 1x1 conv) that tests/test_video_chunked.py runs chunked clips on, here
and on a local Ray with a worker killed mid-frame."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from nst.errors import UserError
from nst.video.chunks import chunk_ranges, join, joins

LAYER = "block1_conv1"


def test_chunk_ranges_cover_the_clip_with_the_overlap():
    assert chunk_ranges(12, 7, 2) == [(0, 7), (5, 12)]
    assert chunk_ranges(12, 4, 1) == [(0, 4), (3, 7), (6, 10), (9, 12)]
    assert chunk_ranges(5, 7, 2) == [(0, 5)]
    assert chunk_ranges(8, 7, 2) == [(0, 8)]  # a last chunk of one new frame is merged into the one before
    for n in range(2, 30):
        for length in range(2, 9):
            for overlap in range(0, (length - 1) // 2 + 1):
                r = chunk_ranges(n, length, overlap)
                assert r[0][0] == 0 and r[-1][1] == n
                assert all(b[0] == a[1] - overlap for a, b in zip(r, r[1:]))
                assert len(r) == 1 or all(e - s >= overlap + 1 for s, e in r)  # new frames after each overlap
    for bad in ((12, 1, 0), (12, 7, 4), (12, 5, -1)):
        with pytest.raises(UserError):
            chunk_ranges(*bad)


def test_join_fades_from_the_earlier_chunk_to_the_later():
    ranges = [(0, 5), (3, 8)]  # frames 3 and 4 are shared
    a = [np.full((2, 2, 3), 10.0, np.float32) for _ in range(5)]
    b = [np.full((2, 2, 3), 40.0, np.float32) for _ in range(5)]
    out = join([a, b], ranges)
    np.testing.assert_allclose([f[0, 0, 0] for f in out], [10, 10, 10, 20, 30, 40, 40, 40], rtol=1e-6)
    assert joins(ranges) == {3, 4, 5}  # steps 2->3, 3->4, 4->5 (named by the later frame) change with the fade
    with pytest.raises(ValueError):
        join([a, b[:4]], ranges)


class StubExtractor:
    network, pooling, layers = "vgg16", "avg", [LAYER]

    def __init__(self, precision="float32", die=None):
        self.precision, self.die = precision, die
        self.kernel = tf.constant(np.random.default_rng(0).normal(size=(1, 1, 3, 6)) / 100, tf.float32)

    def __call__(self, image):
        if self.die and not os.path.exists(self.die):
            Path(self.die).touch()
            os._exit(1)
        return {LAYER: tf.nn.relu(tf.nn.conv2d(tf.convert_to_tensor(image, tf.float32), self.kernel, 1, "SAME"))}


class StubExtractors:
    network, pooling, layers = "vgg16", "avg", [LAYER]

    def __init__(self, die=None):
        self.die = die

    def __call__(self, precision="float32"):
        return StubExtractor(precision, self.die)


class StubSource:
    network = "vgg16"

    def __init__(self, die=None):
        self.die = die

    def extractors(self, network, pooling, layers):
        return StubExtractors(self.die)


def _clip_and_cfg():
    from nst.video.config import load_video_config

    rng = np.random.default_rng(3)
    base = rng.uniform(0, 255, (24, 40, 3)).astype(np.float32)
    frames = [np.ascontiguousarray(base[:, i:i + 32]) for i in range(6)]  # a pan, 1 px a frame
    cfg = load_video_config(None, ["content=x.mp4", "style=y.jpg", "image.size=32", "precision=float32",
                                   "optimizer.xla=false", "optimizer.iterations=3", "video.iterations=2",
                                   "layers.content={conv1_1: 1.0}", "layers.style={conv1_1: 1.0}",
                                   "progress.quiet=true"])
    style = rng.uniform(0, 255, (24, 24, 3)).astype(np.float32)
    return frames, cfg, [(style, 1.0)]
