"""arcgap.transfer.refetch: an output written once more after a registry served a blob with other content."""

from __future__ import annotations

import pytest

from arcgap.errors import Fault, IntegrityError, RegistryDetail
from arcgap.oci.digest import Digest
from arcgap.transfer.refetch import once_more

DIGEST = Digest.of(b"x")


def bad_content(operation: str = "downloading blob sha256:aa from r.example/x") -> IntegrityError:
    return IntegrityError("r.example served a blob with other content",
                          detail=RegistryDetail("r.example", operation, Fault.BAD_CONTENT))


def run(failures: list[IntegrityError]) -> tuple[object, list[int], list[Digest], list[str], int]:
    metered: list[int] = []
    done: list[Digest] = []
    warned: list[str] = []
    calls = [0]

    def attempt(meter, finished):
        calls[0] += 1
        meter(10)
        finished(DIGEST)
        if failures:
            raise failures.pop(0)
        return "written"

    try:
        result: object = once_more(attempt, meter=metered.append, done=done.append, warn=warned.append)
    except IntegrityError as exc:
        result = exc
    return result, metered, done, warned, calls[0]


def test_a_first_mismatch_is_written_once_more_with_a_warning() -> None:
    result, metered, done, warned, calls = run([bad_content()])
    assert result == "written" and calls == 2
    assert sum(metered) == 10  # the failed attempt's bytes taken back
    assert done == [DIGEST]  # told once
    assert len(warned) == 1 and "fetching it once more" in warned[0]


def test_a_second_mismatch_stops_and_says_so() -> None:
    result, _, _, warned, calls = run([bad_content(), bad_content()])
    assert isinstance(result, IntegrityError) and calls == 2 and len(warned) == 1
    assert result.message.endswith("(the second time it was fetched too)")
    assert str(result) == result.message


def test_another_blobs_mismatch_the_second_time_stops_without_saying_twice() -> None:
    result, _, _, _, calls = run([bad_content(), bad_content("downloading blob sha256:bb from r.example/x")])
    assert isinstance(result, IntegrityError) and calls == 2
    assert "second time" not in result.message


@pytest.mark.parametrize("error", [IntegrityError("cache entry damaged"),
                                   IntegrityError("x", detail=RegistryDetail("r", "op", Fault.DIGEST_REFUSED))])
def test_other_integrity_errors_are_not_retried(error: IntegrityError) -> None:
    result, _, _, warned, calls = run([error])
    assert result is error and calls == 1 and warned == []
