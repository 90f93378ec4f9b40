"""llem.quiet: a library's chatter muted in the thread that triggers it, nowhere else."""

from __future__ import annotations

import sys
import threading

from llem.quiet import quiet


def test_quiet_mutes_its_own_thread_only(capsys):
    stdout, stderr = sys.stdout, sys.stderr
    inside, go_on = threading.Event(), threading.Event()

    def chatter() -> None:
        with quiet():
            print("library chatter")
            inside.set()
            go_on.wait(5)
            print("more chatter", file=sys.stderr)

    helper = threading.Thread(target=chatter)
    helper.start()
    assert inside.wait(5)
    print("main output")  # while the helper is muted
    print("main error", file=sys.stderr)
    go_on.set()
    helper.join()
    assert capsys.readouterr() == ("main output\n", "main error\n")
    assert (sys.stdout, sys.stderr) == (stdout, stderr)  # nothing left swapped


def test_quiet_blocks_nest_and_overlap_across_threads(capsys):
    stdout = sys.stdout
    first_in, second_out = threading.Event(), threading.Event()

    def first() -> None:
        with quiet(), quiet():
            first_in.set()
            second_out.wait(5)
            print("first")

    helper = threading.Thread(target=first)
    helper.start()
    assert first_in.wait(5)
    with quiet():  # ends while the helper's block is still open
        print("second")
    second_out.set()
    helper.join()
    print("after")
    assert capsys.readouterr().out == "after\n" and sys.stdout is stdout
