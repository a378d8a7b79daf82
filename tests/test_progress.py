"""Progress off a terminal: plain lines, few of them, and the tqdm interface the package uses."""
import io

from glscl.progress import LogLines


def test_log_lines_write_one_line_at_the_end_and_one_per_interval():
    out = io.StringIO()
    seen = list(LogLines(range(5), None, "decode", "video", interval=3600, file=out))
    assert seen == [0, 1, 2, 3, 4]
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("decode: 5/5 video (") and "done" in lines[0]
    assert "\r" not in out.getvalue()

    out = io.StringIO()
    bar = LogLines(None, 4, "train", "step", initial=1, interval=0.0, file=out)  # every update is due
    bar.update(2)
    bar.set_postfix(loss="0.5")
    bar.update(1)
    bar.close()
    bar.close()  # closing twice writes nothing more
    lines = out.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == ["train: 3/4 step", "train: 4/4 step", "train: 4/4 step"]
    assert lines[-1].endswith("loss=0.5") and "done" in lines[-1] and "done" not in lines[0]
