"""app/services/pipeline.py's explanation budget, and the page that explains only when
asked."""

from __future__ import annotations

from tests.builders.images import jpeg_bytes


def test_explanations_beyond_their_budget_are_503_and_plain_scores_go_on(client_factory):
    with client_factory(max_concurrent_explanations=1, explanation_queue=0) as client:
        explanations = client.app.state.explanations
        with explanations.admit():  # a heatmap in progress holds the only place
            busy = client.post("/predict?explain=true",
                               files={"file": ("x.jpeg", jpeg_bytes())})
            assert busy.status_code == 503 and busy.json()["error"] == "busy"
            assert busy.headers["retry-after"]
            plain = client.post("/predict", files={"file": ("x.jpeg", jpeg_bytes())})
            assert plain.status_code == 200
        again = client.post("/predict?explain=true", files={"file": ("x.jpeg", jpeg_bytes())})
        assert again.status_code == 200


def test_a_full_budget_refuses_a_heatmap_before_reading_its_body(client_factory):
    """A client looping on a full budget costs a request head: the body (here one that is
    not even multipart) is never parsed."""
    with client_factory(max_concurrent_explanations=1, explanation_queue=0) as client:
        with client.app.state.explanations.admit():
            busy = client.post("/predict?explain=true", content=b"not a form",
                               headers={"Content-Type": "multipart/form-data; boundary=x"})
            assert busy.status_code == 503 and busy.json()["error"] == "busy"
        refused = client.post("/predict?explain=true", content=b"not a form",
                              headers={"Content-Type": "multipart/form-data; boundary=x"})
        assert refused.status_code == 400  # with a free place the body is read


def test_a_heatmap_waits_its_turn_holding_no_decode_place(client_factory):
    """Past the budget a heatmap request waits in the queue, in its own thread, without a
    place in the decoder's admission: a plain film is still scored (the only decode place
    is free), and the waiting one is answered once the place is given back."""
    import threading

    from tests.servers import poll

    with client_factory(max_concurrent_explanations=1, explanation_queue=1,
                        explanation_wait_seconds=60, max_concurrent_decodes=1) as client:
        explanations = client.app.state.explanations
        answers = []
        with explanations.admit():  # a heatmap in progress
            waiting = threading.Thread(target=lambda: answers.append(client.post(
                "/predict?explain=true", files={"file": ("x.jpeg", jpeg_bytes())})))
            waiting.start()
            poll(lambda: explanations.waiting == 1, 30, "the heatmap request to queue")
            third = client.post("/predict?explain=true",
                                files={"file": ("x.jpeg", jpeg_bytes())})
            assert third.status_code == 503  # the queue is full: at once
            plain = client.post("/predict", files={"file": ("x.jpeg", jpeg_bytes())})
            assert plain.status_code == 200, plain.text
        waiting.join()
        assert answers[0].status_code == 200, answers[0].text


def test_the_page_without_javascript_explains_only_when_asked(client, samples_dir):
    film = (samples_dir / "person1945_bacteria_4872.jpeg").read_bytes()
    html = {"Accept": "text/html"}
    plain = client.post("/", files={"files": ("x.jpeg", film)}, headers=html)
    asked = client.post("/?explain=true", files={"files": ("x.jpeg", film)}, headers=html)
    assert plain.status_code == asked.status_code == 200
    overlay = 'alt="Heatmap: the regions that raised the score" src="data:'
    assert overlay not in plain.text and overlay in asked.text
    assert 'formaction="/?explain=true"' in plain.text


def test_worklist_requests_beyond_their_limit_are_503(client_factory):
    with client_factory(max_concurrent_batches=1) as client:
        with client.app.state.batches.admit():  # a worklist request in progress
            busy = client.post("/predict/batch", files={"files": ("x.jpeg", jpeg_bytes())})
            assert busy.status_code == 503 and busy.json()["error"] == "busy"
            single = client.post("/predict", files={"file": ("x.jpeg", jpeg_bytes())})
            assert single.status_code == 200  # one film is not a worklist
        assert client.post("/predict/batch", files={"files": ("x.jpeg", jpeg_bytes())}
                           ).status_code == 200


def test_files_past_a_worklist_requests_time_budget_are_not_scored_nor_read():
    from app.services.pipeline import score_films
    from tests.dicom.nodes import stand_in_scorer

    read = []

    def source(i: int):
        def data() -> bytes:
            read.append(i)
            return jpeg_bytes(seed=i)
        return data

    results = list(score_films(stand_in_scorer(), [(f"{i}.jpeg", source(i)) for i in range(3)],
                               budget_seconds=0.0))
    assert [r.error.code for r in results] == ["request_too_slow"] * 3 and read == []
    assert all(r.error.message.startswith("Not scored") for r in results)


def test_refused_files_never_reach_a_decode_worker(client):
    decoder = client.app.state.decoder
    calls = []
    real = decoder.prepare
    decoder.prepare = lambda job, bulk=False: calls.append(job) or real(job, bulk=bulk)
    try:
        files = [("files", (f"{i}.txt", b"not an image\n")) for i in range(5)] + [
            ("files", ("empty.jpeg", b"")), ("files", ("x.gif", b"GIF89a" + b"\0" * 20))]
        answer = client.post("/predict/batch", files=files).json()
    finally:
        decoder.prepare = real
    assert [e["error"]["error"] for e in answer["results"]] == \
        ["not_an_image"] * 5 + ["empty_file", "unsupported_format"]
    assert calls == []


def test_heatmaps_waiting_in_their_queue_never_take_the_route_threads(client_factory):
    """Each waiting heatmap, and each film waiting in the decoder's line, holds a route
    thread: the pool grows by both queues' lengths."""
    import anyio.to_thread

    with client_factory(explanation_queue=45, decode_queue=7) as client:
        tokens = client.portal.call(
            lambda: anyio.to_thread.current_default_thread_limiter().total_tokens)
        assert tokens == 40 + 45 + 7


def test_a_worklist_s_time_budget_does_not_count_the_client_s_pace(monkeypatch):
    """Streamed, a worklist's files arrive while it is scored: the time spent waiting for
    the client's next file is the client's, not the server's, and is not counted."""
    import time as real_time
    import types

    import app.services.pipeline as pipeline
    from tests.dicom.nodes import stand_in_scorer

    clock = [1000.0]
    monkeypatch.setattr(pipeline, "time", types.SimpleNamespace(
        monotonic=lambda: clock[0], perf_counter=real_time.perf_counter))

    def slow_client():
        for i in range(3):
            clock[0] += 30.0  # 30 s to send each file: 90 s against a 60 s budget
            yield f"{i}.jpeg", jpeg_bytes(seed=i)

    results = list(pipeline.score_films(stand_in_scorer(), slow_client(), budget_seconds=60))
    assert [r.error for r in results] == [None, None, None]


def test_the_page_without_javascript_never_queues_for_a_heatmap(client_factory, samples_dir):
    """Its request holds a worklist place and a decode place: with no heatmap place free it
    is answered at once, scored without a heatmap, never left waiting with them."""
    film = (samples_dir / "person1945_bacteria_4872.jpeg").read_bytes()
    with client_factory(max_concurrent_explanations=1, explanation_queue=4,
                        explanation_wait_seconds=60) as client:
        with client.app.state.explanations.admit():
            page = client.post("/?explain=true", files={"files": ("x.jpeg", film)},
                               headers={"Accept": "text/html"})
        assert page.status_code == 200
        assert 'id="decision"' in page.text and 'src="data:image/png' not in page.text
