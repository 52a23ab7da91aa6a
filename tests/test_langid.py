"""Language id: py3langid by default, fastText models by path (trained here) or hub id."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest

from winnow.errors import WinnowError
from winnow.scorers.langid import LangId
from winnow.scorers.text import TextBatch

pytest.importorskip("py3langid")

# Short everyday sentences, written for this test (label, text).
SAMPLE = [
    ("en", "The train to the city leaves every morning at seven o'clock."),
    ("en", "She forgot her umbrella and walked home in the rain."),
    ("en", "Our library is closed on Sundays and public holidays."),
    ("en", "Please send me the report before the meeting tomorrow."),
    ("en", "The children played football in the park until it got dark."),
    ("fr", "Le train pour la ville part tous les matins à sept heures."),
    ("fr", "Elle a oublié son parapluie et elle est rentrée sous la pluie."),
    ("fr", "Notre bibliothèque est fermée le dimanche et les jours fériés."),
    ("fr", "Merci de m'envoyer le rapport avant la réunion de demain."),
    ("fr", "Les enfants ont joué au football dans le parc jusqu'à la nuit."),
    ("de", "Der Zug in die Stadt fährt jeden Morgen um sieben Uhr ab."),
    ("de", "Sie hat ihren Regenschirm vergessen und ist im Regen nach Hause gegangen."),
    ("de", "Unsere Bibliothek ist sonntags und an Feiertagen geschlossen."),
    ("de", "Bitte schicken Sie mir den Bericht vor der Besprechung morgen."),
    ("de", "Die Kinder spielten im Park Fußball, bis es dunkel wurde."),
    ("es", "El tren a la ciudad sale todas las mañanas a las siete."),
    ("es", "Olvidó su paraguas y volvió a casa caminando bajo la lluvia."),
    ("es", "Nuestra biblioteca está cerrada los domingos y los días festivos."),
    ("es", "Por favor, envíame el informe antes de la reunión de mañana."),
    ("es", "Los niños jugaron al fútbol en el parque hasta que oscureció."),
    ("it", "Il treno per la città parte ogni mattina alle sette."),
    ("it", "Ha dimenticato l'ombrello ed è tornata a casa sotto la pioggia."),
    ("it", "La nostra biblioteca è chiusa la domenica e nei giorni festivi."),
    ("it", "Per favore mandami la relazione prima della riunione di domani."),
    ("it", "I bambini hanno giocato a calcio nel parco fino a quando è diventato buio."),
    ("pt", "O comboio para a cidade parte todas as manhãs às sete horas."),
    ("pt", "Ela esqueceu o guarda-chuva e voltou para casa debaixo de chuva."),
    ("pt", "A nossa biblioteca está fechada aos domingos e feriados."),
    ("pt", "Por favor, envie-me o relatório antes da reunião de amanhã."),
    ("pt", "As crianças jogaram futebol no parque até escurecer."),
    ("nl", "De trein naar de stad vertrekt elke ochtend om zeven uur."),
    ("nl", "Ze vergat haar paraplu en liep in de regen naar huis."),
    ("nl", "Onze bibliotheek is op zondag en op feestdagen gesloten."),
    ("nl", "Stuur me alsjeblieft het verslag voor de vergadering van morgen."),
    ("nl", "De kinderen speelden voetbal in het park tot het donker werd."),
    ("ru", "Поезд в город отправляется каждое утро в семь часов."),
    ("ru", "Она забыла зонтик и шла домой под дождём."),
    ("ru", "Наша библиотека закрыта по воскресеньям и праздникам."),
    ("ru", "Пожалуйста, пришлите мне отчёт до завтрашнего совещания."),
    ("ru", "Дети играли в футбол в парке, пока не стемнело."),
    ("zh", "去城里的火车每天早上七点出发。"),
    ("zh", "她忘了带伞，只好冒着雨走回家。"),
    ("zh", "我们的图书馆星期天和节假日不开放。"),
    ("zh", "请在明天开会之前把报告发给我。"),
    ("zh", "孩子们在公园里踢足球，一直玩到天黑。"),
    ("ja", "町へ行く電車は毎朝七時に出発します。"),
    ("ja", "彼女は傘を忘れて、雨の中を歩いて帰りました。"),
    ("ja", "私たちの図書館は日曜日と祝日は休みです。"),
    ("ja", "明日の会議の前に報告書を送ってください。"),
    ("ja", "子どもたちは暗くなるまで公園でサッカーをしました。"),
]


def score(scorer: LangId, texts: list) -> tuple[list, list]:
    scorer.setup()
    cols = scorer.score(TextBatch(pa.array(texts, pa.string())))
    return cols["lang"].to_pylist(), cols["lang_score"].to_pylist()


def test_py3langid_accuracy_on_multilingual_sample():
    labels, scores = score(LangId(), [t for _, t in SAMPLE])
    accuracy = sum(p == g for p, (g, _) in zip(labels, SAMPLE, strict=True)) / len(SAMPLE)
    assert accuracy >= 0.9
    assert all(0 < s <= 1 for s in scores)


def test_empty_text_has_no_language():
    labels, scores = score(LangId(), ["", "   \n ", None, "Hello there, how are you today?"])
    assert labels[:3] == [None, None, None] and scores[:3] == [0.0, 0.0, 0.0]
    assert labels[3] == "en"


def test_restricting_languages_and_custom_column():
    scorer = LangId(LangId.Params(languages=["en", "de"], column="language"))
    scorer.setup()
    cols = scorer.score(TextBatch(pa.array(["Guten Morgen, wie geht es Ihnen heute?"])))
    assert cols["language"].to_pylist() == ["de"]
    assert set(cols) == {"language", "language_score"}


@pytest.fixture(scope="module")
def lid_model(tmp_path_factory):
    """A tiny fastText language-id model trained on the sample (lid.176's label style)."""
    pytest.importorskip("fasttext")
    from fasttext.FastText import _FastText

    from winnow.classifier import train_fasttext

    path = tmp_path_factory.mktemp("lid") / "train.txt"
    lines = [f"__label__{lang} {text}" for lang, text in SAMPLE] * 20
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = path.with_name("lid.bin")
    train_fasttext(
        str(path), str(out), minn=1, maxn=3, epoch=30, lr=0.5, dim=16, bucket=50_000,
        thread=1, seed=0,
    )  # fmt: skip
    return out, _FastText(model_path=str(out))


def test_fasttext_model_by_path(lid_model):
    path, model = lid_model
    texts = [t for _, t in SAMPLE] + ["Zwei Zeilen\nText auf Deutsch.", ""]
    labels, scores = score(LangId(LangId.Params(model=str(path))), texts)
    assert labels[: len(SAMPLE)] == [lang for lang, _ in SAMPLE]  # it learned its data
    expected, probs = model.predict("Zwei Zeilen Text auf Deutsch.", k=1)
    assert labels[-2] == expected[0].removeprefix("__label__")
    assert scores[-2] == pytest.approx(float(probs[0]), rel=1e-6)
    assert labels[-1] is None


def test_hub_id_is_fetched_with_huggingface_hub(tmp_path, monkeypatch):
    pytest.importorskip("huggingface_hub")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # no network in tests
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    scorer = LangId(LangId.Params(model="facebook/fasttext-language-identification"))
    with pytest.raises(WinnowError, match="facebook/fasttext-language-identification"):
        scorer.setup()
    with pytest.raises(WinnowError, match="no such file"):
        LangId(LangId.Params(model=os.path.join(str(tmp_path), "missing.bin"))).setup()
