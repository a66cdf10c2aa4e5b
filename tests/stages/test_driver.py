"""Every stage follows the driver (featx.stages.Stage.run): one Stage class a module, run
eagerly to completion, the output held, provenance and device given by the driver, an output
that is an input refused."""

from __future__ import annotations

import inspect

import pytest

import featx.stages as stages
from featx.cli import all_commands
from featx.errors import OutputError
from featx.stages import Stage, encode, join, train_svm
from featx.stages.encode import EncodeConfig
from featx.stages.evaluate import Evaluate, EvaluateConfig
from featx.stages.join import JoinConfig
from featx.stages.train_svm import TrainSVMConfig

# what only the driver does: a stage that calls these itself bypasses it
DRIVER_ONLY = ("output_folder(", "model_output(", "resolve_device(", "interrupt.polling(",
               "resume_or_refuse(", "joined(", "init_process_group(",
               "provenance(command=")


def test_every_stage_is_one_driver_stage_named_as_its_command():
    found = stages.stages()
    assert set(found) == {"extract", "fit-pca", "fit-gmm", "fit-guidance", "encode", "join",
                          "train-svm", "evaluate", "export", "predict", "maps"}
    assert set(found) <= set(all_commands())
    for name, cls in found.items():
        assert cls.run is Stage.run, f"{name} overrides the driver"
        assert cls.work is not Stage.work, f"{name} has no work"
        source = inspect.getsource(inspect.getmodule(cls))
        for call in DRIVER_ONLY:
            assert call not in source, f"{name} calls {call}) itself"


def test_run_is_eager_and_reports_each_path_as_written(labelled, tmp_path):
    heard = []
    paths = encode.run(labelled.grid, tmp_path / "enc", EncodeConfig(pca=str(labelled.pca)),
                       on_written=heard.append)
    assert isinstance(paths, list) and paths == heard and len(paths) == 2
    assert all(p.is_file() for p in paths)  # written when run returns, nothing to iterate


@pytest.mark.parametrize("case", ["encode into its input", "train-svm onto an input shard",
                                  "evaluate onto its model", "join into a part"])
def test_an_output_that_is_an_input_is_refused_even_with_overwrite(labelled, tmp_path, case):
    svm = tmp_path / "svm.h5"
    train_svm.run(labelled.enc, svm, TrainSVMConfig())
    before = {p: p.read_bytes() for p in [*labelled.grid, *labelled.enc, svm]}
    with pytest.raises(OutputError, match="an output is never an input"):
        if case == "encode into its input":
            encode.run(labelled.grid, labelled.grid[0].parent,
                       EncodeConfig(pca=str(labelled.pca), overwrite=True))
        elif case == "train-svm onto an input shard":
            train_svm.run(labelled.enc, labelled.enc[0], TrainSVMConfig(overwrite=True))
        elif case == "evaluate onto its model":
            Evaluate(EvaluateConfig(model=str(svm), overwrite=True)).run(labelled.enc, svm)
        else:
            join.run([labelled.enc[0].parent, labelled.enc[0].parent], labelled.enc[0].parent,
                     JoinConfig(overwrite=True))
    assert all(p.read_bytes() == b for p, b in before.items())  # nothing touched
