"""course_lib: the code behind the lectures, one file per concept.

Lecture topic -> file (read it beside the notebook):

* learning paradigms, the toy of notebook 01 ............ paradigms.py
* the contrastive loss (InfoNCE, NT-Xent: CPC, SimCLR) .. contrastive.py
* exemplar CNN (notebook 02) ............................ exemplar.py
* rotation prediction (notebook 03) ..................... rotation.py
* relative patch position (notebook 04) ................. patch_position.py
* context encoder, inpainting (notebook 05) .............. context_encoder.py
* colorization (notebook 06) ............................. colorization.py
* contrastive predictive coding (notebook 07) ........... cpc.py
* SimCLR (notebook 08) ................................... simclr.py
* metric learning with the triplet loss, FaceNet (notebook 09) ... facenet.py
* every method on one protocol, the comparison (notebook 10) ... comparison.py
* the comparison over training seeds, recorded ........... sweep.py
* the evaluation protocol (probes, kNN, fine-tuning) .... evaluate.py, baselines.py, results.py
* the supervised baseline (trained on the labels alone) .. supervised.py
* ablations: a method run with a knob changed ........... ablation.py
* the machine's peak (notebook 10's compute) ............ peak.py
* encoders and heads .................................... models.py
* the one training loop (budgets, batch-norm recalibration, caching) ... train.py, history.py, checkpoints.py
* data augmentation (crops, colour jitter, rotations) ... augment.py
* colour spaces (HSV, Lab) ............................. colour.py
* data and batches ...................................... datasets.py, loader.py
* profiles, seeds and devices ........................... config.py
* figures and sliders ................................... plots.py, widgets.py

Every method module has the same shape (docs/adding-a-method.md): ``<Module>Config`` and
``config_for(profile, **overrides)`` (a per-profile table), the loss as a pure function, a step
function for ``train.train``, ``setup(train_data, profile, cfg, device)`` (what its run has of its
own) and ``pretrain(train_data, profile, cfg=None, device=None, progress=True)`` returning
``train.Pretrained(backbone, history, heads)`` through ``train.pretrain_method``.

Instructor tooling (CLI, course runner, grading, benchmark) lives apart, in ``course_lib/tools/``.
"""
