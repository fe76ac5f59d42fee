"""app/services/pipeline.py's explanation budget, and the page that explains only when
asked."""

from __future__ import annotations

from tests.helpers import jpeg_bytes


def test_explanations_beyond_their_budget_are_503_and_plain_scores_go_on(client_factory):
    with client_factory(max_concurrent_explanations=1) as client:
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


def test_the_page_without_javascript_explains_only_when_asked(client, samples_dir):
    film = (samples_dir / "person1945_bacteria_4872.jpeg").read_bytes()
    html = {"Accept": "text/html"}
    plain = client.post("/", files={"files": ("x.jpeg", film)}, headers=html)
    asked = client.post("/?explain=true", files={"files": ("x.jpeg", film)}, headers=html)
    assert plain.status_code == asked.status_code == 200
    overlay = 'alt="Heatmap: the regions that raised the score" src="data:'
    assert overlay not in plain.text and overlay in asked.text
    assert 'formaction="/?explain=true"' in plain.text
