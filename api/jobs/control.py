"""What every job process shares: the stop request (control/stop, control/save_quit or SIGTERM) and
the error that carries a message a person can act on (reported without a traceback)."""

from pathlib import Path


class Stopped(Exception):
    """The user asked the job to stop."""


class JobError(Exception):
    """A failure whose message says what went wrong and what to change."""


class Control:
    """alive(): called on every look at the control folder, i.e. whenever the job's loop turns (so a job
    waiting on something else, such as a ComfyUI queue, keeps its heartbeats)."""

    def __init__(self, run_dir, alive=None):
        self.folder = Path(run_dir) / 'control'
        self.signalled = False
        self.alive = alive

    def on_signal(self, *_):
        self.signalled = True

    def stop_requested(self):
        if self.alive:
            self.alive()
        for name in ('stop', 'save_quit'):
            f = self.folder / name
            if f.exists():
                f.unlink(missing_ok=True)         # consumed once acted on, as the protocol says
                self.signalled = True
        return self.signalled

    def check(self):
        if self.stop_requested():
            raise Stopped()


def job_main(run, description, argv=None):
    """The entry point of a one-process job: `--run_dir`, an event writer with heartbeats, and any unexpected
    error reported as a `failed` status before it propagates. run(run_dir, events) returns the exit code."""
    import argparse

    from utils.events import EventWriter
    p = argparse.ArgumentParser(description=description)
    p.add_argument('--run_dir', required=True)
    args = p.parse_args(argv)
    events = EventWriter(args.run_dir)
    events.start_heartbeat()
    try:
        return run(args.run_dir, events)
    except Exception as e:
        events.status('failed', f'{type(e).__name__}: {e}')
        raise
    finally:
        events.close()
