"""Style transfer for video with temporal consistency (Ruder, Dosovitskiy & Brox 2016, arXiv:1604.08610).

``python -m nst.video CONFIG --input CLIP --output OUT.mp4``. One file per idea:

* :mod:`nst.video.config`    the ``video:`` section and the video config schema (defaults live there)
* :mod:`nst.video.io`        clips in (video files, folders of frames) and videos out, audio copied (PyAV)
* :mod:`nst.video.flow`      optical flow (OpenCV DIS / Farneback), warping, consistency weights
* :mod:`nst.video.temporal`  the ``temporal`` loss term
* :mod:`nst.video.stylize`   frame after frame on the engine: style targets and compiled step reused
* :mod:`nst.video.record`    the run folder: frame PNGs, losses.csv with a frame column, run.json, resume
* :mod:`nst.video.run`       the command line
* :mod:`nst.video.metrics`   the temporal-consistency error
* :mod:`nst.video.synthetic` clips with known flow, for the tests and the measurements
"""
