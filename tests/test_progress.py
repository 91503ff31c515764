"""fetch and preprocess show a progress bar in a terminal, and print none where the output is a
file or a pipe (a queued experiment's log)."""
import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios


def run_in_terminal(project, script):
    """Run `python script` in the project with a pseudo-terminal as stdout and stderr."""
    controller, terminal = pty.openpty()
    # 24 rows of 120 columns: a new pseudo-terminal has none, and tqdm draws to its width.
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    process = subprocess.Popen([sys.executable, script], cwd=project.root, env=project.env,
                               stdout=terminal, stderr=terminal)
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the terminal closed: the process exited
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    assert process.wait(timeout=300) == 0, output.decode(errors="replace")
    return output.decode(errors="replace")


def test_fetch_and_preprocess_show_progress_in_a_terminal_only(project):
    for stage, images in (("fetch", 18), ("preprocess", 18)):
        shown = run_in_terminal(project, f"stages/{stage}.py")
        assert f"{stage}: 100%" in shown and f"{images}/{images}" in shown, shown
        piped = project.run("python", f"stages/{stage}.py")
        assert "%|" not in piped.stderr and "%|" not in piped.stdout, piped.stderr
