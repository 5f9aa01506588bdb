"""The embedded demo fleet: real model servers on loopback, a registry they follow, and traffic
that tells a story within a minute.

What runs (one process, threads; ``fleet.py``):

- four Open Inference Protocol v2 servers on 127.0.0.1 with ephemeral ports (``server.py``),
  each with its Prometheus metrics on a second port in MLServer's metric names:
  ``churn-prod`` and ``churn-staging`` (model ``churn``, environments production and staging),
  ``fraud-prod`` (``fraud``) and ``demand-prod`` (``demand``, a regression). Each serves a
  scikit-learn model trained by ``sample_data/pipeline/train.py`` on ``sample_data/``;
- a registry (seeded on first use with versions, lineage, approvals and alias history;
  ``seed.py``), which the servers follow: when an environment's alias moves, the matching
  server loads that version within ``registry_poll`` (0.5 s) and reports it in its metadata
  ``versions`` and in every infer response's ``model_version``;
- traffic (``traffic.py``): 40, 5, 15 and 10 requests/s built from the synthetic worlds in
  ``datasets.py``; every answered request is written as SageMaker data capture
  (``captures/ENDPOINT/capture-*.jsonl``) and its label as SageMaker ground truth
  (``ground_truth/ENDPOINT/labels-*.jsonl``), joined by event id (the request's ``id``).

The story (``FleetSettings``; seconds after the fleet is ready): at ``drift_at`` (10 s) the
churn endpoints' inputs shift (tenure down, monthly charges up, more support calls, a new plan
``unlimited`` in 40% of rows; the model's outputs shift with them); at ``errors_at`` (15 s)
``error_rate`` (30%) of ``fraud-prod``'s inferences fail with HTTP 500; ``demand-prod`` stays
healthy. Retraining churn with the written config's command trains on the newest labelled
capture window (the drifted world); the candidate passes the churn gates, and once promoted its
reference is the drifted distribution, so the drift goes away.

The fault knob: a version whose params or tags hold ``demo_fault`` misbehaves while served:
``demo_fault = "errors"`` answers HTTP 500 on about half of its inferences (for the automatic
rollback test), ``"slow"`` delays about a quarter of them by 0.6-1.0 s, ``"unready"`` reports
the model not ready. Set it when training (``train.py --param demo_fault=errors``) or later with
a tag (the servers re-read the served version every two seconds).

Entry points: ``modeldeck demo-fleet --write-config FILE [--registry FILE] [--workdir DIR]
[--drift-at S] [--errors-at S] [--error-rate R] [--rate-scale X] ...`` (its command line in
``tui/cli.py`` calls ``fleet.main(write_config, registry, on_ready=...)``);
``fleet.start_subprocess(workdir, registry=None, ready_timeout=30.0)`` (``modeldeck --demo``
and the tests); ``fleet.Fleet`` in-process.
"""
