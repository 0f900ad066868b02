"""What a finished shell command means: its status (spec §10.2) and its output (§10.3).

Everything here is pure. The executor hands over what it observed (`ShellResult`); the
functions decide the run's status, the stored columns, the preview text and which streams
are too large to keep inline. Writing an offloaded stream to
`<artifacts>/runs/<run id>/stdout.txt|stderr.txt` is the caller's job: it writes the text
that `stream_texts` returns for every stream the outcome marks `offload_*`.

Deliberate differences from the anchor implementation:
* Q15 is fixed: a successful run stores `shell_exit_code = 0`, not null.
* Q10 is not copied: stderr that says "timed out" never turns an exit code into a timeout;
  only the executor's own `timed_out` flag does.
"""

from __future__ import annotations

import re
import signal

import msgspec

TRUNCATION_SUFFIX = "\n...[truncated]"
_SUFFIX_BYTES = len(TRUNCATION_SUFFIX.encode())  # 15

_IMAGE_LINE = re.compile(r"\[IMAGE:(/[^\]\r\n]+)\]")
_BLANK_RUNS = re.compile(r"\n{3,}")

NO_OUTPUT = "(no output)"
UNKNOWN_ARTIFACT_PATH = "<artifacts>"


class ShellResult(msgspec.Struct):
    """What the executor observed when the command ended."""

    stdout: bytes
    stderr: bytes
    returncode: int | None  # None when killed by a signal or timed out
    signal_name: str | None  # e.g. "SIGKILL" when terminated by a signal (not by our timeout)
    timed_out: bool
    run_timeout_ms: int


class OutputLimits(msgspec.Struct):
    """The job's `output_*_limit_bytes` / `output_offload_threshold_bytes` settings."""

    store: int
    excerpt: int
    summary: int
    offload_threshold: int


class ShellOutcome(msgspec.Struct):
    status: str  # ok | error | timeout
    error_message: str | None
    shell_exit_code: int | None
    shell_signal: str | None
    shell_timed_out: int  # 0/1
    shell_stdout: str
    shell_stderr: str
    shell_stdout_bytes: int
    shell_stderr_bytes: int
    offload_stdout: bool
    offload_stderr: bool
    preview: str  # delivery text and the text chain conditions are matched against
    summary: str
    image_paths: list[str]
    stdout_excerpt: str
    stderr_excerpt: str
    stdout_truncated: bool
    stderr_truncated: bool


def truncate_text(text: str, limit: int) -> tuple[str, bool]:
    """Spec §10.3 step 4: trim, then cut to at most `limit` UTF-8 bytes.

    An over-long text keeps its longest prefix of whole characters that fits in
    `limit − 15` bytes, followed by `\\n...[truncated]` (15 bytes).
    """
    text = text.strip()
    encoded = _utf8(text)
    if len(encoded) <= limit:
        return text, False
    cut = max(0, limit - _SUFFIX_BYTES)
    # Back off to the start of the character that straddles the cut.
    while cut > 0 and encoded[cut] & 0xC0 == 0x80:
        cut -= 1
    return encoded[:cut].decode("utf-8", "surrogatepass") + TRUNCATION_SUFFIX, True


def extract_image_markers(stdout: str) -> tuple[str, list[str]]:
    """Spec §10.3 step 1: drop `[IMAGE:/absolute/path]` lines from stdout, keeping the paths.

    With at least one marker, the removed lines are taken out whole, runs of 3+ newlines
    collapse to 2 and the text is trimmed. Without any marker stdout is returned unchanged.
    """
    paths: list[str] = []
    kept: list[str] = []
    for line in stdout.split("\n"):
        marker = _IMAGE_LINE.fullmatch(line.removesuffix("\r"))
        if marker:
            paths.append(marker.group(1))
        else:
            kept.append(line)
    if not paths:
        return stdout, []
    return _BLANK_RUNS.sub("\n\n", "\n".join(kept)).strip(), paths


def stream_texts(result: ShellResult) -> tuple[str, str, list[str]]:
    """The full stdout and stderr text (after image-marker removal) and the image paths.

    These are the texts the byte counts measure and the caller writes when offloading.
    """
    stdout, image_paths = extract_image_markers(_decode(result.stdout))
    return stdout, _decode(result.stderr), image_paths


def classify_shell(
    result: ShellResult,
) -> tuple[str, str | None, int | None, str | None, int]:
    """Spec §10.2: (status, error_message, exit_code, signal, timed_out 0/1)."""
    if result.timed_out:
        return (
            "timeout",
            f"Shell command timed out after {result.run_timeout_ms}ms",
            None,
            result.signal_name or "SIGTERM",
            1,
        )
    code = result.returncode
    sig = result.signal_name
    if code is not None and code < 0 and sig is None:
        # A raw Popen return code: -N means "killed by signal N".
        sig, code = _signal_name(-code), None
    if code == 0:
        return "ok", None, 0, None, 0
    if code is not None:
        return "error", f"Shell exited with code {code}", code, None, 0
    if sig:
        return "error", f"Shell terminated by signal {sig}", None, sig, 0
    return "error", "Shell command failed", None, None, 0


def process_shell_output(
    result: ShellResult,
    limits: OutputLimits,
    paths: tuple[str | None, str | None] = (None, None),
) -> ShellOutcome:
    """Spec §10.2 and §10.3 steps 1–8 for one finished shell run.

    `paths` are the artifact paths the caller will write offloaded stdout/stderr to; they
    only appear in the preview's `[stdout offloaded: <path> (<bytes> bytes)]` line.
    """
    status, error_message, exit_code, sig, timed_out = classify_shell(result)
    stdout, stderr, image_paths = stream_texts(result)
    out = _stream("stdout", stdout, limits, paths[0])
    err = _stream("stderr", stderr, limits, paths[1])

    blocks = [block for block in (out.block, err.block) if block]
    if not blocks and error_message:
        blocks.append(error_message)
    preview = "\n\n".join(blocks).strip() or NO_OUTPUT

    return ShellOutcome(
        status=status,
        error_message=error_message,
        shell_exit_code=exit_code,
        shell_signal=sig,
        shell_timed_out=timed_out,
        shell_stdout=out.stored,
        shell_stderr=err.stored,
        shell_stdout_bytes=out.size,
        shell_stderr_bytes=err.size,
        offload_stdout=out.offload,
        offload_stderr=err.offload,
        preview=preview,
        summary=truncate_text(preview, limits.summary)[0],
        image_paths=image_paths,
        stdout_excerpt=out.excerpt,
        stderr_excerpt=err.excerpt,
        stdout_truncated=out.truncated,
        stderr_truncated=err.truncated,
    )


def context_summary(
    outcome: ShellOutcome, stdout_path: str | None, stderr_path: str | None
) -> dict:
    """Spec §10.3 step 9: the run's `context_summary` (`timed_out` is a JSON boolean)."""
    return {
        "shell_result": {
            "exit_code": outcome.shell_exit_code,
            "signal": outcome.shell_signal,
            "timed_out": bool(outcome.shell_timed_out),
            "error_message": outcome.error_message,
            "stdout_excerpt": outcome.stdout_excerpt,
            "stderr_excerpt": outcome.stderr_excerpt,
            "stdout_truncated": outcome.stdout_truncated,
            "stderr_truncated": outcome.stderr_truncated,
            "stdout_path": stdout_path,
            "stderr_path": stderr_path,
            "stdout_bytes": outcome.shell_stdout_bytes,
            "stderr_bytes": outcome.shell_stderr_bytes,
        }
    }


class _Stream(msgspec.Struct):
    size: int
    offload: bool
    stored: str
    excerpt: str
    truncated: bool
    block: str


def _stream(label: str, text: str, limits: OutputLimits, path: str | None) -> _Stream:
    """Steps 2–7 for one stream: size, offload decision, stored column, excerpt, block."""
    size = len(_utf8(text))
    offload = size > limits.offload_threshold
    store_limit = min(limits.store, limits.excerpt) if offload else limits.store
    stored, stored_cut = truncate_text(text, store_limit)
    excerpt, excerpt_cut = truncate_text(text, limits.excerpt)
    lines = [f"{label}:", excerpt] if excerpt else []
    if offload:
        lines.append(f"[{label} offloaded: {path or UNKNOWN_ARTIFACT_PATH} ({size} bytes)]")
    return _Stream(size, offload, stored, excerpt, stored_cut or excerpt_cut, "\n".join(lines))


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _utf8(text: str) -> bytes:
    # surrogatepass: a lone surrogate in a caller's str counts as 3 bytes instead of raising.
    return text.encode("utf-8", "surrogatepass")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
