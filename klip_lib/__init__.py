"""FUSAR-KLIP workbench: data, HCoT captioning, model, losses, SCIO, training, tasks, maps.

Importing the package changes nothing outside it. Same-seed runs are made reproducible by an explicit call,
`klip_lib.determinism.configure()`, which the `klip` command, `klip run`'s notebooks (their import cell) and the
test suite make.

The modules import one way: data -> hcot (captions) -> model/losses -> train -> scio -> tasks -> report, with
`klip_lib.artifacts` (the cached, manifest-keyed steps) above them and the `klip` command on top
(tests/test_imports.py checks it).
"""
