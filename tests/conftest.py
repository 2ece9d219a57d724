import numpy as np
import pytest
import torch

from genviz_lib import data


@pytest.fixture(autouse=True)
def _threads():
    # Small nets on a 2-core machine: fixed threads keep results and run time steady.
    torch.set_num_threads(2)
    yield


@pytest.fixture
def svhn_root(tmp_path):
    """A stand-in SVHN in the real on-disk format (``{split}_32x32.mat``), with an "extra" split to poison from."""
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("test", 20), ("extra", 60)):
        savemat(tmp_path / f"{split}_32x32.mat", {"X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8),
                                                  "y": (np.arange(n) % 10 + 1).reshape(n, 1)})
    return tmp_path


@pytest.fixture
def cifar_root(tmp_path):
    """A stand-in CIFAR-10 in torchvision's on-disk layout (pickled batches): 100 train, 20 test images."""
    import pickle


    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8),
                         b"labels": [i % 10 for i in range(20)]}, f)
    return tmp_path


@pytest.fixture(autouse=True)
def _no_download_switches(monkeypatch):
    # The tests decide for themselves where data comes from: nothing from the shell that runs them.
    for name in ("GENVIZ_DOWNLOAD", "GENVIZ_FASHION_MNIST", "GENVIZ_FASHION_MNIST_URL", "GENVIZ_CIFAR10",
                 "GENVIZ_CIFAR10_URL", "GENVIZ_SVHN", "GENVIZ_SVHN_URL", "GENVIZ_BOOK_BUILD",
                 "BINDER_SERVICE_HOST", "BINDER_LAUNCH_HOST", "BINDER_REQUEST", "BINDER_REPO_URL"):
        monkeypatch.delenv(name, raising=False)


class Server:
    """A folder served over HTTP on 127.0.0.1, with a log of requests and ways to misbehave."""

    def __init__(self, folder):
        import functools
        import http.server
        import threading

        self.folder, self.requests = folder, []
        self.corrupt, self.truncate = {}, {}  # file name → how many more responses to spoil
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                server.requests.append(name)
                path = server.folder / name
                if not path.is_file():
                    return self.send_error(404)
                body = path.read_bytes()
                declared = len(body)
                if server.corrupt.get(name, 0) > 0:  # same length, different bytes
                    server.corrupt[name] -= 1
                    body = bytes(b ^ 0xFF for b in body[:64]) + body[64:]
                if server.truncate.get(name, 0) > 0:  # the connection drops half-way
                    server.truncate[name] -= 1
                    body = body[: len(body) // 2]
                self.send_response(200)
                self.send_header("Content-Length", str(declared))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler))
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def close(self):
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def http_server(tmp_path):
    """Serve ``tmp_path / "served"`` on 127.0.0.1 (a stand-in for a data set's download site)."""
    folder = tmp_path / "served"
    folder.mkdir()
    server = Server(folder)
    yield server
    server.close()


@pytest.fixture
def closed_port():
    """A URL on 127.0.0.1 where nothing listens: what a download sees offline."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture
def fashion_root(tmp_path):
    """A stand-in Fashion-MNIST in the real on-disk format: 60 training and 30 test images of random pixels."""
    folder = tmp_path / "fashion"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 60), ("test", 30)):
        images_file, labels_file = data.FASHION_MNIST_FILES[split]
        data.write_idx(folder / images_file, rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        data.write_idx(folder / labels_file, np.arange(n, dtype=np.uint8) % 10)
    return folder
