"""Shell outcome classification (spec §10.2) and output processing (§10.3), no I/O."""

from __future__ import annotations

import json

from ocsched.domain.shell_output import (
    OutputLimits,
    ShellResult,
    classify_shell,
    context_summary,
    extract_image_markers,
    process_shell_output,
    stream_texts,
    truncate_text,
)

SUFFIX = "\n...[truncated]"
ROOMY = OutputLimits(store=65536, excerpt=2000, summary=5000, offload_threshold=65536)


def shell(
    stdout: bytes | str = b"",
    stderr: bytes | str = b"",
    returncode: int | None = 0,
    signal_name: str | None = None,
    timed_out: bool = False,
    run_timeout_ms: int = 300000,
) -> ShellResult:
    def as_bytes(value: bytes | str) -> bytes:
        return value.encode() if isinstance(value, str) else value

    return ShellResult(
        stdout=as_bytes(stdout),
        stderr=as_bytes(stderr),
        returncode=returncode,
        signal_name=signal_name,
        timed_out=timed_out,
        run_timeout_ms=run_timeout_ms,
    )


def size(text: str) -> int:
    return len(text.encode())


# §10.2 outcome classification ----------------------------------------------------------


def test_exit_zero_is_ok_and_stores_exit_code_zero_not_null():
    assert classify_shell(shell(returncode=0)) == ("ok", None, 0, None, 0)
    outcome = process_shell_output(shell(stdout="hi", returncode=0), ROOMY)
    assert outcome.status == "ok"
    assert outcome.shell_exit_code == 0
    assert outcome.error_message is None
    assert outcome.shell_signal is None
    assert outcome.shell_timed_out == 0


def test_a_timeout_is_status_timeout_with_sigterm_and_no_exit_code():
    result = shell(returncode=None, timed_out=True, run_timeout_ms=1500)
    assert classify_shell(result) == (
        "timeout",
        "Shell command timed out after 1500ms",
        None,
        "SIGTERM",
        1,
    )


def test_a_timeout_that_needed_sigkill_reports_sigkill():
    result = shell(returncode=None, signal_name="SIGKILL", timed_out=True, run_timeout_ms=10)
    status, message, code, sig, timed_out = classify_shell(result)
    assert (status, code, sig, timed_out) == ("timeout", None, "SIGKILL", 1)
    assert message == "Shell command timed out after 10ms"


def test_a_timeout_wins_over_an_exit_code_from_the_terminated_process():
    result = shell(returncode=143, timed_out=True, run_timeout_ms=2000)
    assert classify_shell(result)[:3] == (
        "timeout",
        "Shell command timed out after 2000ms",
        None,
    )


def test_a_nonzero_exit_is_an_error_carrying_the_code():
    assert classify_shell(shell(returncode=3)) == (
        "error",
        "Shell exited with code 3",
        3,
        None,
        0,
    )


def test_stderr_saying_timed_out_does_not_turn_an_exit_code_into_a_timeout():
    result = shell(stderr="curl: (28) Operation timed out after 5000 ms", returncode=28)
    outcome = process_shell_output(result, ROOMY)
    assert outcome.status == "error"
    assert outcome.shell_exit_code == 28
    assert outcome.shell_timed_out == 0
    assert outcome.error_message == "Shell exited with code 28"


def test_a_process_killed_by_another_signal_is_an_error_naming_the_signal():
    result = shell(returncode=None, signal_name="SIGKILL")
    assert classify_shell(result) == (
        "error",
        "Shell terminated by signal SIGKILL",
        None,
        "SIGKILL",
        0,
    )


def test_a_raw_negative_return_code_is_read_as_the_signal_that_killed_it():
    assert classify_shell(shell(returncode=-9)) == (
        "error",
        "Shell terminated by signal SIGKILL",
        None,
        "SIGKILL",
        0,
    )


def test_no_exit_code_no_signal_and_no_timeout_is_still_an_error():
    assert classify_shell(shell(returncode=None)) == (
        "error",
        "Shell command failed",
        None,
        None,
        0,
    )


def test_the_outcome_carries_the_classification_columns():
    outcome = process_shell_output(shell(returncode=None, signal_name="SIGSEGV"), ROOMY)
    assert (outcome.status, outcome.shell_exit_code, outcome.shell_signal) == (
        "error",
        None,
        "SIGSEGV",
    )
    assert outcome.shell_timed_out == 0
    assert outcome.error_message == "Shell terminated by signal SIGSEGV"


# §10.3 step 4: the truncation helper ---------------------------------------------------


def test_text_within_the_limit_is_only_trimmed():
    assert truncate_text("  hello \n", 5) == ("hello", False)
    assert truncate_text("", 64) == ("", False)
    assert truncate_text(" \n\t ", 64) == ("", False)


def test_over_long_text_keeps_limit_minus_15_bytes_and_appends_the_marker():
    text, cut = truncate_text("a" * 100, 64)
    assert cut is True
    assert text == "a" * 49 + SUFFIX
    assert size(text) == 64


def test_the_size_check_happens_after_trimming():
    assert truncate_text("   " + "a" * 64 + "   ", 64) == ("a" * 64, False)


def test_a_multibyte_character_straddling_the_cut_is_dropped_whole():
    # 48 ASCII bytes then "é" (2 bytes) would need 50 bytes; only 49 fit before the suffix.
    text, cut = truncate_text("a" * 48 + "é" * 20, 64)
    assert cut is True
    assert text == "a" * 48 + SUFFIX
    assert size(text) == 63


def test_a_multibyte_character_ending_exactly_at_the_cut_is_kept():
    text, _ = truncate_text("a" * 47 + "é" * 20, 64)
    assert text == "a" * 47 + "é" + SUFFIX
    assert size(text) == 64


def test_four_byte_characters_are_never_split():
    text, cut = truncate_text("😀" * 30, 64)
    assert cut is True
    assert text == "😀" * 12 + SUFFIX  # 48 of the 49 available bytes
    text.encode("utf-8")  # no lone surrogates or broken sequences


# §10.3 step 1: image markers -----------------------------------------------------------


def test_image_marker_lines_are_removed_and_their_paths_collected():
    stdout = "chart ready\n[IMAGE:/tmp/chart.png]\ndone\n[IMAGE:/tmp/report.pdf]\n"
    assert extract_image_markers(stdout) == (
        "chart ready\ndone",
        ["/tmp/chart.png", "/tmp/report.pdf"],
    )


def test_removing_markers_collapses_blank_runs_to_one_blank_line_and_trims():
    stdout = "\n\ntop\n\n[IMAGE:/a.png]\n\n\nbottom\n\n"
    assert extract_image_markers(stdout) == ("top\n\nbottom", ["/a.png"])


def test_only_whole_line_markers_with_absolute_paths_count():
    stdout = "see [IMAGE:/a.png]\n[IMAGE:relative.png]\n [IMAGE:/b.png]\n[IMAGE:]\n"
    assert extract_image_markers(stdout) == (stdout, [])


def test_a_marker_line_ending_in_crlf_still_counts():
    assert extract_image_markers("x\r\n[IMAGE:/c.png]\r\ny") == ("x\r\ny", ["/c.png"])


def test_without_markers_stdout_is_left_exactly_as_written():
    stdout = "  a\n\n\n\nb  \n"
    assert extract_image_markers(stdout) == (stdout, [])


def test_the_outcome_lists_image_paths_and_hides_the_markers_from_every_text():
    result = shell(stdout="hello\n[IMAGE:/tmp/x.png]\n")
    outcome = process_shell_output(result, ROOMY)
    assert outcome.image_paths == ["/tmp/x.png"]
    assert outcome.shell_stdout == "hello"
    assert outcome.stdout_excerpt == "hello"
    assert outcome.preview == "stdout:\nhello"
    assert outcome.shell_stdout_bytes == 5


def test_image_markers_in_stderr_are_left_alone():
    outcome = process_shell_output(shell(stderr="[IMAGE:/tmp/x.png]\n"), ROOMY)
    assert outcome.image_paths == []
    assert outcome.shell_stderr == "[IMAGE:/tmp/x.png]"


# §10.3 step 2: byte counts -------------------------------------------------------------


def test_byte_counts_are_the_utf8_size_of_the_full_untrimmed_streams():
    outcome = process_shell_output(shell(stdout="  héllo\n", stderr="€\n"), ROOMY)
    assert outcome.shell_stdout_bytes == 9
    assert outcome.shell_stderr_bytes == 4
    assert outcome.shell_stdout == "héllo"


def test_byte_counts_measure_the_full_stream_not_the_truncated_column():
    limits = OutputLimits(store=128, excerpt=64, summary=64, offload_threshold=100000)
    outcome = process_shell_output(shell(stdout="x" * 1000, stderr="y" * 700), limits)
    assert outcome.shell_stdout_bytes == 1000
    assert outcome.shell_stderr_bytes == 700


def test_invalid_utf8_is_decoded_with_replacement_characters():
    stdout, stderr, images = stream_texts(shell(stdout=b"ok \xff", stderr=b"\xc3"))
    assert (stdout, stderr, images) == ("ok \ufffd", "\ufffd", [])
    outcome = process_shell_output(shell(stdout=b"ok \xff"), ROOMY)
    assert outcome.shell_stdout == "ok \ufffd"
    assert outcome.shell_stdout_bytes == 6  # what the offload file would hold


def test_stream_texts_are_what_an_offload_file_holds():
    result = shell(stdout="a\n[IMAGE:/p.png]\nb\n", stderr="  err  ")
    assert stream_texts(result) == ("a\nb", "  err  ", ["/p.png"])


# §10.3 step 3: offloading --------------------------------------------------------------


def test_a_stream_larger_than_the_threshold_is_offloaded():
    limits = OutputLimits(store=65536, excerpt=2000, summary=5000, offload_threshold=128)
    outcome = process_shell_output(shell(stdout="o" * 129, stderr="e" * 129), limits)
    assert outcome.offload_stdout is True
    assert outcome.offload_stderr is True


def test_a_stream_exactly_at_the_threshold_stays_inline():
    limits = OutputLimits(store=65536, excerpt=2000, summary=5000, offload_threshold=128)
    outcome = process_shell_output(shell(stdout="o" * 128, stderr="e" * 10), limits)
    assert outcome.offload_stdout is False
    assert outcome.offload_stderr is False


def test_the_offload_threshold_is_in_utf8_bytes_not_characters():
    limits = OutputLimits(store=65536, excerpt=2000, summary=5000, offload_threshold=128)
    outcome = process_shell_output(shell(stdout="é" * 65), limits)  # 65 chars, 130 bytes
    assert outcome.offload_stdout is True


# §10.3 steps 5 and 6: stored columns and excerpts --------------------------------------


def test_stored_columns_use_the_store_limit_when_not_offloaded():
    limits = OutputLimits(store=128, excerpt=64, summary=64, offload_threshold=100000)
    outcome = process_shell_output(shell(stdout="s" * 300, stderr="t" * 100), limits)
    assert outcome.shell_stdout == "s" * 113 + SUFFIX
    assert outcome.shell_stderr == "t" * 100
    assert outcome.stdout_truncated is True
    assert outcome.stderr_truncated is True  # its 64-byte excerpt was cut


def test_an_offloaded_stream_stores_only_the_smaller_of_store_and_excerpt():
    limits = OutputLimits(store=200, excerpt=80, summary=100, offload_threshold=128)
    outcome = process_shell_output(shell(stdout="s" * 300), limits)
    assert outcome.offload_stdout is True
    assert outcome.shell_stdout == "s" * 65 + SUFFIX
    assert size(outcome.shell_stdout) == 80


def test_excerpts_use_the_excerpt_limit():
    limits = OutputLimits(store=65536, excerpt=64, summary=5000, offload_threshold=65536)
    outcome = process_shell_output(shell(stdout="x" * 70, stderr="  short  "), limits)
    assert outcome.stdout_excerpt == "x" * 49 + SUFFIX
    assert outcome.shell_stdout == "x" * 70
    assert outcome.stdout_truncated is True
    assert outcome.stderr_excerpt == "short"
    assert outcome.stderr_truncated is False


def test_multibyte_streams_are_cut_on_character_boundaries_in_every_column():
    limits = OutputLimits(store=128, excerpt=64, summary=64, offload_threshold=100000)
    outcome = process_shell_output(shell(stdout="日本語" * 40), limits)  # 3-byte chars
    assert outcome.shell_stdout == ("日本語" * 40)[:37] + SUFFIX  # 111 of 113 bytes
    assert outcome.stdout_excerpt == ("日本語" * 40)[:16] + SUFFIX  # 48 of 49 bytes
    assert size(outcome.shell_stdout) <= 128
    assert size(outcome.stdout_excerpt) <= 64


def test_nothing_is_truncated_for_short_output():
    outcome = process_shell_output(shell(stdout="a", stderr="b"), ROOMY)
    assert outcome.stdout_truncated is False
    assert outcome.stderr_truncated is False


# §10.3 step 7: the preview -------------------------------------------------------------


def test_the_preview_shows_each_stream_as_a_labelled_block_separated_by_a_blank_line():
    outcome = process_shell_output(shell(stdout="out\n", stderr="warn\n"), ROOMY)
    assert outcome.preview == "stdout:\nout\n\nstderr:\nwarn"


def test_an_empty_stream_has_no_block():
    outcome = process_shell_output(shell(stderr="only err", returncode=1), ROOMY)
    assert outcome.preview == "stderr:\nonly err"


def test_the_preview_uses_excerpts_not_stored_columns():
    limits = OutputLimits(store=65536, excerpt=64, summary=5000, offload_threshold=65536)
    outcome = process_shell_output(shell(stdout="x" * 100), limits)
    assert outcome.preview == "stdout:\n" + "x" * 49 + SUFFIX


def test_an_offloaded_stream_adds_a_line_naming_its_file_and_full_size():
    limits = OutputLimits(store=65536, excerpt=64, summary=5000, offload_threshold=128)
    result = shell(stdout="o" * 200, stderr="e" * 300, returncode=2)
    paths = ("/art/runs/r1/stdout.txt", "/art/runs/r1/stderr.txt")
    outcome = process_shell_output(result, limits, paths)
    assert outcome.preview == (
        "stdout:\n"
        + "o" * 49
        + SUFFIX
        + "\n[stdout offloaded: /art/runs/r1/stdout.txt (200 bytes)]"
        + "\n\nstderr:\n"
        + "e" * 49
        + SUFFIX
        + "\n[stderr offloaded: /art/runs/r1/stderr.txt (300 bytes)]"
    )


def test_an_offloaded_stream_without_a_known_path_renders_a_placeholder():
    limits = OutputLimits(store=65536, excerpt=2000, summary=5000, offload_threshold=128)
    outcome = process_shell_output(shell(stderr="e" * 129), limits, ("/x/stdout.txt", None))
    assert outcome.preview.endswith("[stderr offloaded: <artifacts> (129 bytes)]")
    assert "stdout" not in outcome.preview


def test_an_offloaded_blank_stream_still_reports_its_file():
    limits = OutputLimits(store=65536, excerpt=2000, summary=5000, offload_threshold=128)
    outcome = process_shell_output(shell(stdout=" " * 200), limits, ("/o.txt", None))
    assert outcome.preview == "[stdout offloaded: /o.txt (200 bytes)]"


def test_without_output_a_failed_run_previews_its_error_message():
    outcome = process_shell_output(shell(returncode=7), ROOMY)
    assert outcome.preview == "Shell exited with code 7"
    timeout = shell(returncode=None, timed_out=True, run_timeout_ms=500, stdout="  \n")
    assert process_shell_output(timeout, ROOMY).preview == "Shell command timed out after 500ms"


def test_a_silent_successful_run_previews_no_output():
    outcome = process_shell_output(shell(stdout="\n  \n"), ROOMY)
    assert outcome.preview == "(no output)"
    assert outcome.summary == "(no output)"


def test_output_takes_precedence_over_the_error_message_in_the_preview():
    outcome = process_shell_output(shell(stdout="partial", returncode=1), ROOMY)
    assert outcome.preview == "stdout:\npartial"
    assert outcome.error_message == "Shell exited with code 1"


# §10.3 step 8: the summary -------------------------------------------------------------


def test_the_summary_is_the_preview_cut_to_the_summary_limit():
    limits = OutputLimits(store=65536, excerpt=2000, summary=100, offload_threshold=65536)
    outcome = process_shell_output(shell(stdout="é" * 500), limits)
    assert outcome.preview == "stdout:\n" + "é" * 500
    assert outcome.summary == "stdout:\n" + "é" * 38 + SUFFIX  # 8 + 76 of 85 bytes
    assert size(outcome.summary) <= 100


def test_a_short_preview_is_its_own_summary():
    outcome = process_shell_output(shell(stdout="fine"), ROOMY)
    assert outcome.summary == outcome.preview == "stdout:\nfine"


# §10.3 step 9: context summary ---------------------------------------------------------


def test_the_context_summary_holds_the_shell_result_keys():
    limits = OutputLimits(store=65536, excerpt=64, summary=5000, offload_threshold=128)
    result = shell(stdout="o" * 200, stderr="bad", returncode=4)
    outcome = process_shell_output(result, limits, ("/r/stdout.txt", None))
    summary = context_summary(outcome, "/r/stdout.txt", None)
    assert summary == {
        "shell_result": {
            "exit_code": 4,
            "signal": None,
            "timed_out": False,
            "error_message": "Shell exited with code 4",
            "stdout_excerpt": "o" * 49 + SUFFIX,
            "stderr_excerpt": "bad",
            "stdout_truncated": True,
            "stderr_truncated": False,
            "stdout_path": "/r/stdout.txt",
            "stderr_path": None,
            "stdout_bytes": 200,
            "stderr_bytes": 3,
        }
    }
    json.dumps(summary)  # stored as JSON text


def test_the_context_summary_reports_a_timeout_as_true():
    outcome = process_shell_output(shell(returncode=None, timed_out=True), ROOMY)
    shell_result = context_summary(outcome, None, None)["shell_result"]
    assert shell_result["timed_out"] is True
    assert shell_result["signal"] == "SIGTERM"
    assert shell_result["exit_code"] is None
