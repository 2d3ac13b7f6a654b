"""Evaluation: how good the classifier and the whole pipeline are on labelled data, and the peer models used as
yardsticks. Only the command line, training reports and benchmarks import it; the run-time pipeline never does.

- ``classification``: the classifier on labelled face crops (``maskwatch evaluate``)
- ``detection``: end to end on scene photos: AP@0.5 per class, face recall by size (``maskwatch evaluate-detection``)
- ``metrics``: confusion matrices, per-class and per-size reports
- ``peers``: other projects' detectors to compare with (AIZOO)
"""
