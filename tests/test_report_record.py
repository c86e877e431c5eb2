"""va report's record of the reports it wrote (va/report.py): its own report is replaced by the next one,
anything else at the report's path is the user's and is refused. In-process, without Snakemake."""

from __future__ import annotations

from pathlib import Path

import pytest

from va.errors import ExitCode, VaError
from va.report import record_report, refuse_foreign
from va.workdir import Workdir


def test_a_report_va_wrote_may_be_replaced_and_nothing_else(tmp_path: Path) -> None:
    owner = Workdir(tmp_path / "run")
    (owner.root / "logs").mkdir(parents=True)
    target = tmp_path / "report.html"
    refuse_foreign(target, owner)  # nothing there: nothing to refuse

    target.write_text("<html>report</html>\n")
    with pytest.raises(VaError) as foreign:
        refuse_foreign(target, owner)  # a file va did not write
    assert foreign.value.code == ExitCode.OUTPUT_EXISTS

    record_report(target, owner)
    refuse_foreign(target, owner)  # the report va just wrote: the next one replaces it

    target.write_text("<html>report, and my remark</html>\n")
    with pytest.raises(VaError):
        refuse_foreign(target, owner)  # changed since va wrote it

    (tmp_path / "folder.html").mkdir()
    with pytest.raises(VaError):
        refuse_foreign(tmp_path / "folder.html", owner)


def test_an_unreadable_record_refuses_rather_than_replaces(tmp_path: Path) -> None:
    owner = Workdir(tmp_path / "run")
    (owner.root / "logs").mkdir(parents=True)
    target = tmp_path / "report.html"
    target.write_text("<html>report</html>\n")
    record_report(target, owner)
    owner.reports.write_text("{not json")
    with pytest.raises(VaError):
        refuse_foreign(target, owner)
    record_report(target, owner)  # the next report writes a good record again
    refuse_foreign(target, owner)
