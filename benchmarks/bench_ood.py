"""Does a checkpoint say when an input is unlike its training data? daam.ood's flag on sets it never saw.

    python benchmarks/bench_ood.py {text,image,audio} [--write]

Prints, per checkpoint: the share of its test items the detector flags (recorded when it was fitted: held out, in
distribution; goal <= 5%), the share flagged of each out-of-distribution set below (goal >= 90%), and the
detector's own time against explain()'s on one input, in one run (goal <= 5%). --write records the detection rates
in metrics.json and the card. No set is used to fit the detector or choose its threshold (daam.ood uses the
training and validation splits only). The sets, made here or read from where they are installed:
- text: sentences in 20, 20 more and 30 more other languages, written for this benchmark; strings that are not
  language (keyboard runs, numbers, code, URLs, hashes, emoji), generated with a fixed seed
- image: photographs that are not garments: scikit-image's sample photos and Debian's desktop wallpapers
  (`pip install scikit-image`; `apt-get install ukui-wallpapers lomiri-wallpapers`); portraits: the 100 faces of
  scikit-image's Labeled Faces in the Wild subset; its 100 other patches of photographs; the 7 photographs among
  Gradio's media assets and scikit-learn's sample images, whole and in quarters (held out, see below)
- audio: speech that is not a letter name (alsa-utils' and the freedesktop sound theme's channel announcements,
  espeak-ng reading sentences); sound effects (the freedesktop theme's other sounds); noise (white, pink, brown,
  generated); music (melodies and chords of harmonic tones, generated); Gradio's sample clips in 1.5 s windows,
  actors' lines and music (held out). For audio both the flag and what the
  visitor is told are counted: a clip the speech probe finds no speech in is answered "no spoken letter" instead.
An input the app refuses outright (a picture in which nothing stands out from the background) gets no prediction;
it is counted as refused, beside the flag.
The sets marked "held out" were first run after the detector's design was fixed; the others were run while it was
chosen (its views; for text, the per-position view and its layer were chosen on the first two language sets; for
images, the "early" view and its stages on the photographs, portraits and patches), so they are not wholly unseen
by that choice (audio's sets were all first run after it).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
from daam import load_pretrained  # noqa: E402
from daam.errors import InputError  # noqa: E402
from daam.modalities import no_answer  # noqa: E402
from timing import median_seconds  # noqa: E402

OTHER_LANGUAGES = [
    "Le film était magnifique et les acteurs jouent avec une grande sincérité.",
    "Je me suis ennuyé du début à la fin, quelle perte de temps.",
    "Der Film war spannend, aber das Ende hat mich enttäuscht.",
    "Die Schauspieler sind großartig und die Musik passt perfekt.",
    "La película es aburrida y el guion no tiene ningún sentido.",
    "Una historia conmovedora con una fotografía preciosa.",
    "Il film è troppo lungo, ma la regia è davvero elegante.",
    "Che noia, non lo consiglierei a nessuno.",
    "O filme é divertido e os atores estão ótimos.",
    "A história é fraca e o final é previsível.",
    "De film is prachtig gemaakt en heel ontroerend.",
    "Wat een saaie film, ik ben halverwege in slaap gevallen.",
    "Filmen var vacker men alldeles för lång.",
    "Jag skrattade hela tiden, en riktigt rolig komedi.",
    "Film był nudny, a dialogi sztuczne.",
    "Świetna obsada i wzruszająca historia.",
    "Film çok sıkıcıydı ve oyunculuk zayıftı.",
    "Harika bir hikaye, kesinlikle tekrar izlerim.",
    "Elokuva oli kaunis ja koskettava.",
    "Juoni oli sekava eikä loppu vakuuttanut.",
    "Фильм очень скучный, и актёры играют плохо.",
    "Прекрасная история с замечательной музыкой.",
    "Η ταινία ήταν υπέροχη και πολύ συγκινητική.",
    "Βαρετή ιστορία χωρίς κανένα ενδιαφέρον.",
    "这部电影非常感人，演员的表演很出色。",
    "剧情无聊，结局也让人失望。",
    "この映画はとても面白くて、音楽も素晴らしい。",
    "話が長すぎて、途中で眠くなった。",
    "كان الفيلم رائعا والتمثيل ممتازا.",
    "قصة مملة ونهاية متوقعة.",
    "यह फिल्म बहुत अच्छी थी और संगीत शानदार था।",
    "कहानी उबाऊ थी और अभिनय कमजोर था।",
    "이 영화는 정말 감동적이었어요.",
    "지루하고 너무 길었어요.",
    "Bộ phim rất hay và cảm động.",
    "Phim dài dòng và nhàm chán.",
    "Filmu ilikuwa nzuri sana na ya kusisimua.",
    "Hadithi ilikuwa ya kuchosha sana.",
    "A film nagyon szép és megható volt.",
    "Unalmas történet, gyenge színészi játékkal.",
]


# Written after the detector's design was fixed (its three views), and never looked at before: the other sets above
# had been run against an earlier, two-view design, so they are not wholly unseen by the choice of views.
HELD_OUT_LANGUAGES = [
    "Ten film mě vůbec nebavil, herci byli strnulí.",
    "Filmul a fost minunat, cu o poveste emoționantă.",
    "Jeg elskede denne film, den var sjov og rørende.",
    "Filmen var kjedelig og altfor lang.",
    "Filmnya sangat bagus dan musiknya indah sekali.",
    "Ang pelikula ay nakakabagot at mahaba.",
    "Фільм був чудовий, я плакав наприкінці.",
    "הסרט היה משעמם והעלילה צפויה.",
    "ภาพยนตร์เรื่องนี้สนุกมากและน่าประทับใจ",
    "La pel·lícula és preciosa i molt emotiva.",
    "Kvikmyndin var frábær og leikurinn góður.",
    "Filma oso ona da eta aktoreak bikainak.",
    "Elokuvan musiikki oli upeaa mutta tarina heikko.",
    "Mūzika bija skaista, bet sižets garlaicīgs.",
    "Filmas buvo nuobodus ir per ilgas.",
    "Ffilm hyfryd gyda stori deimladwy iawn.",
    "Tá an scannán seo go hiontach ar fad.",
    "Filmi ishte i mërzitshëm dhe i gjatë.",
    "Филмът беше прекрасен и много вълнуващ.",
    "Film je bio dosadan, a gluma loša.",
]


# Written after the per-position view was chosen (on the two sets above, which are no longer unseen by the design), and
# never looked at before it was fixed: 30 languages in neither set above.
NEW_LANGUAGES = [
    "Film bol nudný a herci hrali bez života.",
    "Zgodba je bila lepa, glasba pa čudovita.",
    "See film oli igav ja liiga pikk.",
    "Die fliek was pragtig en baie aangrypend.",
    "Filem ini sangat membosankan dan terlalu panjang.",
    "La filmo estis bela kaj tre kortuŝa.",
    "Fabula longa est et actores non placent.",
    "Il-film kien sabiħ ħafna u l-mużika eċċellenti.",
    "O filme foi aburrido e a historia moi lenta.",
    "De Film war langweileg an ze laang.",
    "Film çox maraqlı idi və aktyorlar əla oynadılar.",
    "Kino juda zerikarli va uzun edi.",
    "Ifilimu ibimnandi kakhulu futhi ithinta inhliziyo.",
    "Fíìmù náà dára púpọ̀, orin rẹ̀ sì dùn.",
    "Fim ɗin yana da ban sha'awa sosai.",
    "Filimku wuxuu ahaa mid aad u xiiso badan.",
    "این فیلم خیلی خسته کننده و طولانی بود.",
    "یہ فلم بہت اچھی تھی اور موسیقی شاندار تھی۔",
    "ছবিটি খুব সুন্দর এবং আবেগময় ছিল।",
    "இந்த படம் மிகவும் சலிப்பாக இருந்தது.",
    "Ֆիլմը շատ գեղեցիկ էր և հուզիչ։",
    "ფილმი ძალიან მოსაწყენი იყო.",
    "Филм је био досадан и предугачак.",
    "Филмот беше прекрасен и многу возбудлив.",
    "Фильм өте қызықты болды, актерлер керемет ойнады.",
    "Кино маш уйтгартай, хэтэрхий урт байсан.",
    "यो फिल्म धेरै राम्रो र मनछुने थियो।",
    "ፊልሙ በጣም አሰልቺ እና ረጅም ነበር።",
    "ខ្សែភាពយន្តនេះល្អណាស់ ហើយគួរឱ្យរំភើប។",
    "ဒီရုပ်ရှင်က အရမ်းကောင်းပြီး စိတ်လှုပ်ရှားစရာကောင်းတယ်။",
]


def not_language(count: int = 60, seed: int = 0) -> list[str]:
    """Strings that are not language: keyboard runs, digits, code, URLs, hashes, emoji, punctuation."""
    rng = random.Random(seed)
    keys, makers = "qwertyuiopasdfghjklzxcvbnm", []
    makers.append(lambda: " ".join("".join(rng.choice(keys) for _ in range(rng.randint(3, 8))) for _ in range(rng.randint(3, 8))))
    makers.append(lambda: " ".join(str(rng.randint(0, 10 ** rng.randint(1, 7))) for _ in range(rng.randint(4, 12))))
    makers.append(lambda: f"def f{rng.randint(0, 99)}(x): return [i * {rng.randint(2, 9)} for i in range(x) if i % 3]")
    makers.append(lambda: f"https://example.org/{rng.getrandbits(40):x}/index.php?id={rng.randint(1, 9999)}&ref=abc")
    makers.append(lambda: "%032x" % rng.getrandbits(128))
    makers.append(lambda: "".join(rng.choice("😀😂🎬🍿⭐🔥💯👍👎🙈") for _ in range(rng.randint(3, 12))))
    makers.append(lambda: "".join(rng.choice("!?.,;:-_#@$%^&*()[]{}") for _ in range(rng.randint(5, 30))))
    return [makers[i % len(makers)]() for i in range(count)]


def text_sets() -> dict[str, list]:
    return {"sentences in 20 other languages": OTHER_LANGUAGES, "strings that are not language": not_language(),
            "sentences in 20 more languages": HELD_OUT_LANGUAGES,
            "sentences in 30 more languages (held out)": NEW_LANGUAGES}


def image_sets() -> dict[str, list]:
    import skimage
    from PIL import Image

    data = Path(skimage.__file__).parent / "data"
    photos = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(data.glob("*"))
              if p.stem in SKIMAGE_PHOTOS and p.suffix in (".png", ".jpg")]
    photos += [np.asarray(Image.open(p).convert("RGB")) for p in sorted(Path("/usr/share/backgrounds").glob("*"))
               if p.suffix in (".png", ".jpg")]
    lfw = (np.load(data / "lfw_subset.npy") * 255).astype(np.uint8)  # 25x25: 100 faces, then 100 other patches
    return {"photographs that are not garments": photos, "portraits (Labeled Faces in the Wild)": list(lfw[:100]),
            "patches of photographs (the LFW subset's non-faces)": list(lfw[100:]),
            "photographs shipped with Gradio and scikit-learn, whole and in quarters (held out)": shipped_photographs()}


def shipped_photographs() -> list[np.ndarray]:
    """The 7 photographs among Gradio's media assets and scikit-learn's sample images (a tower, cheetahs, a lion, a
    toy, a temple, a flower: the kind of picture the issue's visitor tried), each whole and each of its four quarters."""
    import gradio
    import sklearn
    from PIL import Image

    paths = [Path(gradio.__file__).parent / "media_assets" / "images" / name
             for name in ("cheetah.jpg", "cheetah1.jpg", "groot.jpeg", "lion.jpg", "tower.jpg")]
    paths += [Path(sklearn.__file__).parent / "datasets" / "images" / name for name in ("china.jpg", "flower.jpg")]
    out = []
    for path in paths:
        picture = np.asarray(Image.open(path).convert("RGB"))
        h, w = picture.shape[0] // 2, picture.shape[1] // 2
        out += [picture] + [picture[r:r + h, c:c + w] for r in (0, h) for c in (0, w)]
    return out


SKIMAGE_PHOTOS = {"astronaut", "camera", "chelsea", "coffee", "coins", "hubble_deep_field", "moon", "motorcycle_left",
                  "motorcycle_right", "rocket", "retina", "grass", "gravel", "brick", "clock_motion", "ihc"}


def audio_sets() -> dict[str, list]:
    from daam.audio import SAMPLE_RATE

    sounds = Path("/usr/share/sounds")
    channels = sorted(sounds.glob("alsa/*_*.wav")) + sorted(sounds.glob("freedesktop/stereo/audio-channel-*.oga"))
    speech = [str(p) for p in channels if "Noise" not in p.name]
    sentences = ["The weather is lovely today.", "Please close the door behind you.", "Where is the train station?",
                 "I would like a cup of coffee.", "The meeting starts at nine o'clock.", "Turn left at the corner.",
                 "She sells sea shells by the sea shore.", "Thank you very much for your help.",
                 "Numbers one two three.", "Good morning everybody."]
    for sentence in sentences:
        for voice in ("en", "en-us+m3", "en-gb+f2"):
            wav = subprocess.run(["espeak-ng", "-v", voice, "--stdout", sentence], capture_output=True, check=True).stdout
            speech.append(wav)
    effects = [str(p) for p in sorted(sounds.glob("freedesktop/stereo/*.oga")) if "audio-channel" not in p.name]
    rng = np.random.default_rng(0)
    noise = []
    for i in range(24):
        white = rng.standard_normal(int(SAMPLE_RATE * rng.uniform(0.5, 2.0)))
        coloured = [white, np.cumsum(white) / 30, np.convolve(white, np.ones(16) / 16, mode="same")][i % 3]
        noise.append((SAMPLE_RATE, (coloured / np.abs(coloured).max() * rng.uniform(0.1, 0.8)).astype(np.float32)))
    noise.append(str(sounds / "alsa" / "Noise.wav"))
    music = []
    for i in range(24):
        t = np.arange(int(SAMPLE_RATE * 1.5)) / SAMPLE_RATE
        notes = 220 * 2 ** (rng.integers(0, 24, size=6) / 12)
        chord = i % 2 == 1  # chords, or a melody of six notes
        clip = np.zeros_like(t)
        for k, f in enumerate(notes[:3] if chord else notes):
            on = (t >= 0) if chord else (t >= k * 0.25) & (t < (k + 1) * 0.25)
            envelope = np.exp(-3 * (t - (0 if chord else k * 0.25)).clip(0))
            clip += on * envelope * sum(np.sin(2 * np.pi * f * h * t) / h for h in (1, 2, 3, 4))
        music.append((SAMPLE_RATE, (clip / np.abs(clip).max() * 0.6).astype(np.float32)))
    return {"speech that is not a letter name": speech, "sound effects": effects, "noise": noise, "music": music,
            **shipped_clips()}


def shipped_clips(window_s: float = 1.5) -> dict[str, list]:
    """Gradio's sample clips, cut into windows of window_s: actors' lines (real speech, not letter names) and music
    (a band, a saxophone: the issue's visitor tried the latter). Held out."""
    import gradio
    import soundfile as sf

    folder = Path(gradio.__file__).parent / "media_assets" / "audio"
    kinds = {"speech that is not a letter name, Gradio's actors' lines (held out)":
             ("cate_blanch.mp3", "cate_blanch_2.mp3", "heath_ledger.mp3"),
             "music, Gradio's band and saxophone (held out)": ("cantina.wav", "sax.wav")}
    out = {}
    for kind, names in kinds.items():
        for name in names:
            samples, rate = sf.read(folder / name, dtype="float32", always_2d=True)
            step = int(window_s * rate)
            out.setdefault(kind, []).extend((rate, samples[start:start + step].mean(1))
                                            for start in range(0, len(samples) - step + 1, step))
    return out


SETS = {"text": text_sets, "image": image_sets, "audio": audio_sets}


def overhead(model, item, rounds: int = 50) -> tuple[float, float]:
    """The detector's own time on one input (its views of the batch and the score; median of `rounds`) and
    explain()'s, in ms. Timing explain() with and without it instead measures this machine's noise (+-5%)."""
    from daam.ood import views_of

    encoded = model.encoder([item])
    with torch.no_grad():
        _, inter = model(encoded.features.float(), encoded.mask, return_intermediates=True)
        scoring = median_seconds(lambda: model.ood(views_of(model, inter, encoded.features, encoded.mask)), rounds)
    return scoring * 1e3, median_seconds(lambda: model.explain(item), 10) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modality", choices=sorted(SETS))
    parser.add_argument("--write", action="store_true", help="record the detection rates in metrics.json and the card")
    args = parser.parse_args()
    torch.set_num_threads(2)
    checkpoint = ROOT / "checkpoints" / args.modality
    model = load_pretrained(checkpoint)
    if model.ood is None:
        parser.exit(2, f"{checkpoint} has no detector yet: python -m daam.fit_ood --checkpoint {checkpoint}\n")
    metrics = json.loads((checkpoint / "metrics.json").read_text())
    fitted = metrics["ood"]
    print(f"{args.modality}: {fitted['test_flagged']:.1%} of {fitted['test_items']} held-out test items flagged "
          f"(goal <= 5%), threshold {fitted['threshold']} = the {fitted['quantile']:.0%} quantile of validation")
    detection = {}
    for name, items in SETS[args.modality]().items():
        flagged = told = refused = 0
        for item in items:
            try:
                e = model.explain(item)
            except InputError:  # the visitor is told what is wrong with it, and gets no prediction at all
                refused += 1
                continue
            flagged += bool(e.out_of_distribution)
            told += bool(e.out_of_distribution) or no_answer(e) == "not speech"
        detection[name] = {"items": len(items), "flagged": round(flagged / len(items), 4)}
        line = f"  {name}: {flagged}/{len(items)} flagged ({flagged / len(items):.1%}; goal >= 90%)"
        if refused:
            detection[name]["refused"] = round(refused / len(items), 4)
            line += f"; {refused} refused as unreadable (no prediction): flagged or refused {(flagged + refused) / len(items):.1%}"
        if args.modality == "audio":
            detection[name]["flagged_or_no_speech"] = round((told + refused) / len(items), 4)
            line += f"; flagged, refused or answered 'no spoken letter': {(told + refused) / len(items):.1%}"
        print(line)
    example = {"text": "A warm, funny and beautifully acted film.", "image": str(ROOT / "examples" / "image_fmnist_shirt.png"),
               "audio": str(ROOT / "examples" / "audio_espeak_b.wav")}[args.modality]
    scoring_ms, explain_ms = overhead(model, example)
    print(f"scoring {scoring_ms:.2f} ms of explain()'s {explain_ms:.1f} ms: {scoring_ms / explain_ms:.1%} (goal <= 5%)")
    if args.write:
        from daam.model_card import write_card

        metrics["ood"] |= {"detection": detection, "detection_command": f"python benchmarks/bench_ood.py {args.modality}"}
        (checkpoint / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        write_card(checkpoint, metrics, model.config)
        print(f"wrote the detection rates into {checkpoint / 'metrics.json'} and its card")


if __name__ == "__main__":
    main()
