"""The progress line of a foreground agent: on a terminal (a real pty) it
shows the step, steps/s and time left, redrawn in place; piped, or with
--silent, it is not there; the down line says how fast the run was."""

from __future__ import annotations

import re
import sys

import pexpect

from hera.progress import Progress, duration, line


def test_a_terminal_sees_the_progress_line_and_then_the_down_line(world):
    _, path = world.build()
    world.run("up", path.name, "--steps", "10")  # compiled and installed before the pty run
    child = pexpect.spawn(sys.executable, ["-m", "hera", "up", path.name, "--steps", "4000000"],
                          cwd=str(world.workdir), env=world.env, encoding="utf-8", timeout=120,
                          dimensions=(40, 200))
    child.expect(r"\rstep ([\d,]+) of 4,000,010 · [\d.]+[kM]? steps/s · [\d.]+[kM]? spikes/s · "
                 r"[^\r\n]+ left\x1b\[K")
    first = int(child.match.group(1).replace(",", ""))
    child.expect(r"\rstep ([\d,]+) of 4,000,010")
    assert int(child.match.group(1).replace(",", "")) > first, "the line moves on"
    child.expect(r"\r\x1b\[Kdown \S+ \(\S+\) at step 4000010 \(4M steps this run in [\d.]+ s, "
                 r"[\d.]+[kM]? steps/s; steps done\)")
    child.expect(pexpect.EOF)


def test_ctrl_c_says_how_to_go_on_and_a_second_one_saves_and_stops(world):
    agent_id, path = world.build()
    world.run("up", path.name, "--steps", "10")
    child = pexpect.spawn(sys.executable, ["-m", "hera", "up", path.name],
                          cwd=str(world.workdir), env=world.env, encoding="utf-8", timeout=120,
                          dimensions=(40, 200))
    child.expect(r"\rstep [\d,]+ · ")
    child.sendintr()
    child.expect(r"standby at step (\d+): Ctrl-C again within 2 s saves and stops; Ctrl-Z "
                 r"opens the prompt \(Ctrl-D there runs on\); 'hera signal SIGCONT' runs on")
    standby = int(child.match.group(1))
    child.sendintr()
    child.expect(rf"Ctrl-C twice: saving at step {standby} and stopping")
    child.expect(rf"down \S+ \(\S+\) at step {standby} .*; ctrl-c twice\)")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    row = world.row(agent_id)
    assert (row["status"], row["steps"]) == ("down", standby)


def test_piped_or_silent_there_is_no_progress_line(world):
    _, path = world.build()
    piped = world.run("up", path.name, "--steps", "300000").stdout
    assert "\r" not in piped and "\x1b" not in piped and " left" not in piped
    assert re.search(r"300k steps this run in [\d.]+ s, [\d.]+[kM]? steps/s", piped), piped
    child = pexpect.spawn(sys.executable, ["-m", "hera", "up", path.name, "--steps", "300000",
                                           "--silent"],
                          cwd=str(world.workdir), env=world.env, encoding="utf-8", timeout=120)
    child.expect(pexpect.EOF)
    assert "steps/s" not in child.before and "step " not in child.before


def test_the_line_is_redrawn_at_most_every_interval_with_a_smoothed_rate():
    now = [0.0]
    shown: list[str] = []
    progress = Progress(shown.append, 100, 10_100, clock=lambda: now[0])
    progress.update(200)                 # too soon: nothing drawn
    assert shown == []
    now[0] = 1.0
    progress.update(1_100)               # 1,000 steps in 1 s
    assert shown == ["step 1,100 of 10,100 · 1k steps/s · 9.0 s left"]
    now[0] = 2.0
    progress.update(3_100)               # 2,000 steps/s now, smoothed toward it
    assert shown[-1] == "step 3,100 of 10,100 · 1.7k steps/s · 4.1 s left"
    assert line(5, None, 12_345.0) == "step 5 · 12.3k steps/s"  # no budget: no time left


def test_spikes_per_second_come_from_the_counts_read_at_each_redraw():
    now, spikes, reads = [0.0], [500], []

    def count() -> int:
        reads.append(now[0])
        return spikes[0]

    shown: list[str] = []
    progress = Progress(shown.append, 0, None, clock=lambda: now[0], spikes=count)
    now[0], spikes[0] = 0.2, 900
    progress.update(100)                 # not drawn: the counts are not read either
    assert shown == [] and reads == [0.0]
    now[0], spikes[0] = 1.0, 2_500
    progress.update(1_000)
    assert shown == ["step 1,000 · 1k steps/s · 2k spikes/s"]


def test_durations_read_as_a_person_would_say_them():
    assert [duration(s) for s in (0.04, 4.25, 42.4, 200, 7_500)] == [
        "0.0 s", "4.2 s", "42 s", "3 min 20 s", "2 h 05 min"]
