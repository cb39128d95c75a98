"""LLM structurer over real backends: a tiny random transformers model, and a real HTTP server on 127.0.0.1.

The tiny model answers garbage, which exercises invalid output -> one retry -> rule-based fallback.
The HTTP server also has an "oracle" model that answers known reports with fixed JSON, so parsing and
validation of a correct answer (and of malformed ones) go through the same real HTTP client.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from monai_ils.report import RuleBasedStructurer, structure_reports
from monai_ils.report.llm import HTTPChatBackend, LLMStructurer, TransformersChatBackend, parse_llm_answer
from monai_ils.report.llm.prompts import number_sentences
from monai_ils.report.locations import LocationMapper
from monai_ils.report.sections import split_sentences

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

CHAT_TEMPLATE = (
    "{% for m in messages %}<s> {{ m['role'] }} : {{ m['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}<s> assistant : {% endif %}"
)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A randomly initialised Llama and a WordLevel tokenizer with a chat template, saved as on the Hub."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from monai_ils.report.llm.prompts import STRUCTURING_SYSTEM

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["[UNK]", "[PAD]", "<s>", "</s>"])
    tok.train_from_iterator([STRUCTURING_SYSTEM, "opacity effusion { } [ ] : , findings entity"], trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", bos_token="<s>", eos_token="</s>")
    fast.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(vocab_size=len(fast), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=8192,
                         bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(path)
    fast.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_backend(tiny_model_dir):
    return TransformersChatBackend(tiny_model_dir, max_new_tokens=6, batch_size=2)


# ------------------------------------------------------------------------------------------------
# A real chat-completions server
# ------------------------------------------------------------------------------------------------
GOOD_REPORT = "Bibasilar opacities, likely atelectasis. No pleural effusion."
GOOD_ANSWER = {"findings": [
    {"entity": "opacities", "sentence_index": 1, "presence": "positive", "certainty": "tentative", "location_terms": ["bibasilar"],
     "lesion_type": "opacity", "predicted_lesion_type": "atelectasis", "predicted_sentence_index": 1},
    {"entity": "pleural effusion", "sentence_index": 2, "presence": "negative", "certainty": "definitive", "location_terms": [],
     "lesion_type": "effusion", "predicted_lesion_type": None, "predicted_sentence_index": None},
]}
PNEUMOTHORAX = {"entity": "pneumothorax", "sentence_index": 1, "presence": "positive", "certainty": "definitive",
                "location_terms": ["left apical"], "lesion_type": None, "predicted_lesion_type": None, "predicted_sentence_index": None}


def _answer(text_key, findings):
    return json.dumps({"findings": findings})


ORACLE = {
    GOOD_REPORT: json.dumps(GOOD_ANSWER),
    "Small left apical pneumothorax.": "```json\n" + json.dumps({"findings": [PNEUMOTHORAX]}) + "\n```",
    "Small left apical pneumothorax seen.": "Sure! Here it is: not json at all",
    "Small left apical pneumothorax noted.": _answer(0, [{**PNEUMOTHORAX, "lesion_type": "pneumothorax"}]),
    "Opacity in the axilla.": _answer(0, [{**PNEUMOTHORAX, "entity": "opacity", "lesion_type": "opacity", "location_terms": ["axilla"]}]),
    "Opacity in the subpleural region.": _answer(0, [{**PNEUMOTHORAX, "entity": "opacity", "lesion_type": "opacity",
                                                     "location_terms": ["subpleural region"]}]),
    "Right lower lobe opacity.": _answer(0, [{**PNEUMOTHORAX, "entity": "opacity", "lesion_type": "opacity",
                                              "location_terms": ["left upper lobe"]}]),
    "Stable cardiomegaly.": _answer(0, [{**PNEUMOTHORAX, "entity": "cardiomegaly", "sentence_index": 3, "lesion_type": "cardiomegaly",
                                         "location_terms": []}]),
}
RETRY_REPORT = "Mild cardiomegaly."
RETRY_ANSWER = _answer(0, [{**PNEUMOTHORAX, "entity": "cardiomegaly", "lesion_type": "cardiomegaly", "location_terms": []}])
LOCATION_ORACLE = {"subpleural region": ({"category": "lung"}, {"labels": ["right lung", "left lung"]}),
                   "axilla": ({"category": "elbow"}, None)}


class ChatServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tiny_backend):
        super().__init__(("127.0.0.1", 0), ChatHandler)
        self.tiny = tiny_backend
        self.lock = threading.Lock()
        self.payloads = []
        self.flaky_left = 0

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class ChatHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _send(self, status, body):
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):  # noqa: N802
        if self.path != "/v1/chat/completions":
            return self._send(404, {"error": f"no route {self.path}"})
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server = self.server
        with server.lock:
            server.payloads.append(payload)
        model, messages = payload["model"], payload["messages"]
        if model == "tiny":
            with server.lock:
                result = server.tiny.complete([messages])[0]
            content = result.text
        elif model == "slow":
            time.sleep(1.0)
            content = "{}"
        elif model == "rejecting":
            return self._send(400, {"error": "bad request: unknown parameter"})
        else:  # oracle (optionally flaky)
            if model == "flaky":
                with server.lock:
                    server.flaky_left -= 1
                    fail = server.flaky_left >= 0
                if fail:
                    return self._send(503, {"error": "overloaded"})
            content = self._oracle(messages)
        self._send(200, {"id": "x", "object": "chat.completion", "model": model,
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]})

    @staticmethod
    def _oracle(messages):
        last = messages[-1]["content"]
        if last.startswith("Location term:"):
            term = last.splitlines()[0].split(":", 1)[1].strip()
            step1, step2 = LOCATION_ORACLE[term]
            return json.dumps(step2 if "lung regions" in messages[0]["content"] else step1)
        if last.startswith("That answer was rejected"):
            return RETRY_ANSWER
        section = last.split("Report section:\n", 1)[1]
        for report, answer in ORACLE.items():
            if section == number_sentences(split_sentences(report)):
                return answer
        if section == number_sentences(split_sentences(RETRY_REPORT)):
            return "{not json"
        return json.dumps({"findings": []})


@pytest.fixture(scope="module")
def server(tiny_backend):
    srv = ChatServer(tiny_backend)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


# ------------------------------------------------------------------------------------------------
def test_transformers_backend_garbage_falls_back_to_rules(tiny_backend):
    structurer = LLMStructurer(tiny_backend)
    text = "Bibasilar opacities, likely atelectasis. No pleural effusion."
    report = structurer.structure(text, "findings")
    assert report.structurer == "rules" and report.section_name == "findings"
    assert "(attempt 1)" in report.fallback_reason and "(attempt 2)" in report.fallback_reason
    assert "used the rule-based result" in report.fallback_reason
    assert report.findings == RuleBasedStructurer()(text).findings


def test_transformers_backend_loads_from_path_only(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        TransformersChatBackend(tmp_path)


def test_http_tiny_model_garbage_falls_back(server):
    backend = HTTPChatBackend(server.url, model="tiny", timeout=60, max_retries=0)
    report = LLMStructurer(backend).structure("Stable mild cardiomegaly.", "impression")
    assert report.structurer == "rules" and report.fallback_reason.startswith("LLM answer rejected (attempt 1)")
    assert [f.lesion_type for f in report.findings] == ["cardiomegaly"]
    sent = server.payloads[-1]
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["schema"]["required"] == ["findings"]
    assert sent["messages"][-1]["content"].startswith("That answer was rejected")  # the one retry


def test_http_valid_answer_is_parsed_into_findings(server):
    report = LLMStructurer(HTTPChatBackend(server.url, model="oracle")).structure(GOOD_REPORT, "findings")
    assert report.structurer == "llm" and report.fallback_reason is None
    opacity, effusion = report.findings
    assert (opacity.lesion_type, opacity.presence, opacity.certainty, opacity.predicted_lesion_type) == (
        "opacity", "positive", "tentative", "atelectasis")
    assert opacity.location_terms == ["bibasilar"] and opacity.location_categories == ["lung"]
    assert opacity.locations == ["right lung base", "left lung base"]
    assert (effusion.presence, effusion.locations) == ("negative", ["right lung base", "left lung base"])
    # code fences around the JSON are accepted; other findings keep lesion_type None
    (ptx,) = LLMStructurer(HTTPChatBackend(server.url, model="oracle")).structure("Small left apical pneumothorax.").findings
    assert (ptx.lesion_type, ptx.locations) == (None, ["left apical zone lung"])


@pytest.mark.parametrize(
    "report, reason",
    [
        ("Small left apical pneumothorax seen.", "answer is not valid JSON: 'Sure! Here it is: not json at all'"),
        ("Small left apical pneumothorax noted.", "findings[0]: unknown lesion_type 'pneumothorax'"),
        ("Opacity in the axilla.", "findings[0]: unknown location term 'axilla' (not in the location table)"),
        ("Right lower lobe opacity.", "findings[0]: location term 'left upper lobe' does not occur in the report"),
        ("Stable cardiomegaly.", "findings[0]: sentence_index 3 is out of range (1..1)"),
    ],
)
def test_http_malformed_answers_give_reasons(server, report, reason):
    structurer = LLMStructurer(HTTPChatBackend(server.url, model="oracle"), max_retries=0)
    result = structurer.structure(report, "findings")
    assert result.structurer == "rules"
    assert result.fallback_reason.startswith(f"LLM answer rejected (attempt 1) {reason}")
    assert result.fallback_reason.endswith("; used the rule-based result")


def test_http_retry_fixes_invalid_answer(server):
    result = LLMStructurer(HTTPChatBackend(server.url, model="oracle")).structure(RETRY_REPORT, "findings")
    assert result.structurer == "llm" and [f.lesion_type for f in result.findings] == ["cardiomegaly"]
    assert result.findings[0].locations == ["heart"]


def test_http_location_mapping_with_llm(server):
    backend = HTTPChatBackend(server.url, model="oracle")
    structurer = LLMStructurer(backend, location_backend=backend, max_retries=0)
    (f,) = structurer.structure("Opacity in the subpleural region.").findings
    assert (f.location_terms, f.location_categories, f.locations) == (["subpleural region"], ["lung"], ["right lung", "left lung"])
    bad = structurer.structure("Opacity in the axilla.")
    assert "location term 'axilla': unknown category 'elbow' from the LLM" in bad.fallback_reason


def test_http_batch_concurrency_and_skipped_reports(server):
    structurer = LLMStructurer(HTTPChatBackend(server.url, model="oracle", concurrency=4), batch_size=3)
    reports = [f" FINDINGS: {GOOD_REPORT}\n", " EXAMINATION: CHEST\n", "Small left apical pneumothorax.", " FINDINGS: \n"]
    out = structure_reports(reports, structurer)
    assert [r.structurer for r in out] == ["llm", "rules", "llm", "rules"]
    assert out[1].skipped and out[3].skipped
    assert len(out[0].findings) == 2 and out[2].findings[0].entity == "pneumothorax"


def test_http_retries_transient_errors(server):
    server.flaky_left = 2
    backend = HTTPChatBackend(server.url, model="flaky", max_retries=2, backoff=0.01)
    assert backend.complete([[{"role": "user", "content": f"Report section:\n1. {GOOD_REPORT}"}]])[0].ok
    server.flaky_left = 5
    backend = HTTPChatBackend(server.url, model="flaky", max_retries=1, backoff=0.01)
    result = backend.complete([[{"role": "user", "content": "Report section:\n1. x"}]])[0]
    assert not result.ok and "HTTP 503" in result.error and "after 2 attempts" in result.error


def test_http_timeout_and_client_errors(server):
    slow = HTTPChatBackend(server.url, model="slow", timeout=0.2, max_retries=0).complete([[{"role": "user", "content": "x"}]])[0]
    assert not slow.ok and slow.error.startswith("timeout after 0.2s")
    rejected = HTTPChatBackend(server.url, model="rejecting", max_retries=3).complete([[{"role": "user", "content": "x"}]])[0]
    assert rejected.error.startswith("HTTP 400")  # no retry on client errors
    down = HTTPChatBackend("http://127.0.0.1:9/v1", max_retries=0, timeout=1).complete([[{"role": "user", "content": "x"}]])[0]
    assert "cannot connect" in down.error
    report = LLMStructurer(HTTPChatBackend("http://127.0.0.1:9/v1", max_retries=0, timeout=1)).structure("Mild cardiomegaly.")
    assert report.structurer == "rules" and "backend error: cannot connect" in report.fallback_reason


def test_parse_llm_answer_accepts_empty_list():
    assert parse_llm_answer('{"findings": []}', ["Lungs are clear."], LocationMapper()) == []


def test_vllm_backend_only_when_it_imports():
    from monai_ils.report.llm import VLLMChatBackend, vllm_available

    if vllm_available():
        pytest.skip("vllm is installed here")
    with pytest.raises(ImportError, match="use HTTPChatBackend instead"):
        VLLMChatBackend("/nonexistent")


def test_http_structurer_survives_pickling_for_worker_processes(server):
    """The generation runner's workers get a pickled copy: sessions and threads are rebuilt, answers unchanged."""
    import pickle

    structurer = LLMStructurer(HTTPChatBackend(server.url, model="oracle", concurrency=2))
    before = structurer.structure(GOOD_REPORT, "findings").findings
    copy = pickle.loads(pickle.dumps(structurer))
    assert copy.backend._pool is None and copy.backend.url == structurer.backend.url
    assert copy.structure(GOOD_REPORT, "findings").findings == before


def test_transformers_backend_loads_on_first_use_and_pickles_without_weights(tiny_model_dir, tmp_path):
    import pickle
    import shutil

    backend = TransformersChatBackend(tiny_model_dir, max_new_tokens=6, batch_size=2)
    assert not backend.loaded and backend.model is None and backend.tokenizer is None
    unused = pickle.dumps(backend)
    assert len(unused) < 2048  # path and settings only
    conversation = [[{"role": "user", "content": "opacity effusion"}]]
    first = backend.complete(conversation)
    assert backend.loaded and first[0].ok
    eager = pickle.loads(unused).load()
    assert eager.loaded and eager.complete(conversation)[0].text == first[0].text
    copy = pickle.loads(pickle.dumps(backend))  # a used backend leaves its weights behind
    assert not copy.loaded and len(pickle.dumps(backend)) < 2048
    assert copy.complete(conversation)[0].text == first[0].text
    no_weights = tmp_path / "no-weights"
    shutil.copytree(tiny_model_dir, no_weights, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    with pytest.raises(FileNotFoundError, match="no weights file"):
        TransformersChatBackend(no_weights)
