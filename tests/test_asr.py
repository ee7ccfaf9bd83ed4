"""Turn splitting, script conversion, guards and the cache, on transcripts built in memory."""

import numpy as np
import pytest

from speechqa import asr
from speechqa.config import ChannelSettings, GuardSettings, TurnSettings, load_settings
from tests.conftest import segment, transcript, word


def _turns(t, **turn_kw):
    return asr.to_turns(t, "c9", ChannelSettings(), TurnSettings(**turn_kw), GuardSettings())


def test_stereo_channels_map_to_roles_and_interleave_in_call_order():
    agent = [segment([word(0.5, 1.0, "您好"), word(1.0, 1.6, "，欢迎")])]
    customer = [segment([word(2.0, 2.5, "我要"), word(2.5, 3.0, "投诉")])]
    turns = _turns(transcript(agent, customer))
    assert [(t.role, t.channel, t.turn_id) for t in turns] == [
        ("agent", 0, "c9-agent-0001"),
        ("customer", 1, "c9-customer-0001"),
    ]


def test_channel_mapping_is_configurable():
    t = transcript([segment([word(0, 1, "喂")])], [segment([word(2, 3, "您好")])])
    turns = asr.to_turns(t, "c", ChannelSettings(agent=1, customer=0), TurnSettings(), GuardSettings())
    assert [t.role for t in turns] == ["customer", "agent"]


def test_mono_is_unknown():
    turns = _turns(transcript([segment([word(0, 1, "喂")])]))
    assert turns[0].role == "unknown" and turns[0].turn_id == "c9-unknown-0001"


def test_a_pause_inside_a_segment_splits_the_turn_and_keeps_words():
    seg = segment([word(0.0, 0.5, "好的"), word(0.5, 1.0, "。"), word(2.5, 3.0, "请问"),
                   word(3.0, 3.4, "还有")])
    turns = _turns(transcript([seg]), gap_s=0.7)
    assert [(t.start, t.end, t.text) for t in turns] == [(0.0, 1.0, "好的。"), (2.5, 3.4, "请问还有")]
    assert [w.word for w in turns[1].words] == ["请问", "还有"]


def test_segments_without_a_pause_between_them_are_one_turn():
    a = segment([word(0.0, 1.0, "我想")])
    b = segment([word(1.2, 2.0, "查话费")])
    turns = _turns(transcript([a, b]), gap_s=0.7)
    assert len(turns) == 1 and turns[0].text == "我想查话费"


def test_max_turn_length_is_respected():
    words = [word(i * 1.0, i * 1.0 + 0.9, "好") for i in range(40)]
    turns = _turns(transcript([segment(words)]), gap_s=0.7, max_s=10.0)
    assert all(t.end - t.start <= 10.0 for t in turns)
    assert sum(len(t.text) for t in turns) == 40


def test_traditional_output_becomes_simplified():
    seg = segment([word(0, 1, "您好，帳單"), word(1, 2, "問題")])
    turn = _turns(transcript([seg]))[0]
    assert turn.text == "您好，账单问题"
    assert [w.word for w in turn.words] == ["您好，账单", "问题"]


def test_conversion_keeps_mainland_words():
    seg = segment([word(0, 1, "您的行程已確認，帳戶")])
    assert _turns(transcript([seg]))[0].text == "您的行程已确认，账户"


def test_script_can_be_kept():
    seg = segment([word(0, 1, "帳單")])
    assert _turns(transcript([seg]), script="keep")[0].text == "帳單"


def test_guards_flag_but_keep_suspect_turns():
    g = GuardSettings()
    assert asr.guard_flags("好的好的好的好的好的", -0.2, 0.0, 1.0, g) == ("repetition",)
    assert asr.guard_flags("您好", -0.2, 0.0, 3.1, g) == ("high_compression",)
    assert asr.guard_flags("嗯", -1.5, 0.9, 1.0, g) == ("no_speech",)
    assert asr.guard_flags("字幕由 Amara.org 社区提供", -0.2, 0.0, 1.0, g) == ("junk_phrase",)
    assert asr.guard_flags("您好，请问有什么可以帮您？", -0.2, 0.1, 1.1, g) == ()
    seg = segment([word(0, 1, "谢谢观看")], no_speech_prob=0.95, avg_logprob=-1.4)
    turn = _turns(transcript([seg]))[0]
    assert turn.text == "谢谢观看"
    assert set(turn.flags) == {"no_speech", "junk_phrase"}


def test_repeated_long_phrase_is_a_loop():
    g = GuardSettings()
    text = "没有了谢谢。这些什么时候能退回来，这些什么时候能退回来。"
    assert "repetition" in asr.guard_flags(text, -0.3, 0.0, 1.3, g)
    assert asr.guard_flags("对对对，好的", -0.3, 0.0, 1.0, g) == ()


def test_segment_without_words_still_becomes_a_turn():
    seg = segment([], text="喂？")
    turns = _turns(transcript([seg]))
    assert [t.text for t in turns] == ["喂？"]


def test_cache_round_trip_and_key(tmp_path):
    from speechqa.config import AsrSettings

    t = transcript([segment([word(0, 1, "喂")])])
    s = AsrSettings()
    key = asr.cache_key("a" * 64, "m" * 64, "int8", s)
    assert asr.load_cached(tmp_path, key) is None
    asr.save_cached(tmp_path, key, t)
    assert asr.load_cached(tmp_path, key) == t
    # runtime-only settings do not change the key; decoding settings do
    assert asr.cache_key("a" * 64, "m" * 64, "int8", AsrSettings(cpu_threads=1)) == key
    assert asr.cache_key("a" * 64, "m" * 64, "int8", AsrSettings(beam_size=1)) != key
    assert asr.cache_key("b" * 64, "m" * 64, "int8", s) != key
    assert asr.cache_key("a" * 64, "n" * 64, "int8", s) != key
    assert not list(tmp_path.rglob("*.tmp"))


def test_corrupt_cache_entry_is_a_miss(tmp_path):
    from speechqa.config import AsrSettings

    key = asr.cache_key("a" * 64, "m" * 64, "int8", AsrSettings())
    path = tmp_path / "asr" / key[:2] / f"{key}.json"
    path.parent.mkdir(parents=True)
    path.write_text("{truncated", encoding="utf-8")
    assert asr.load_cached(tmp_path, key) is None


def test_compute_type_defaults():
    assert asr.resolve_compute_type("cpu", "auto") == "int8"
    assert asr.resolve_compute_type("cuda", "auto") == "float16"
    assert asr.resolve_compute_type("cpu", "float32") == "float32"


def test_lexicon_repairs_text_and_words_together():
    from speechqa.lexicon import build_lexicon

    seg = segment([word(0.0, 0.4, "我想"), word(0.4, 0.8, "問一下"), word(0.8, 1.2, "車"),
                   word(1.2, 1.5, "顯"), word(1.5, 1.9, "的事")])
    lex = build_lexicon(("车险",))
    turn = asr.to_turns(transcript([seg]), "c", ChannelSettings(), TurnSettings(), GuardSettings(), lex)[0]
    assert turn.text == "我想问一下车险的事"
    assert turn.corrections == ("车显→车险",)
    assert [w.word for w in turn.words] == ["我想", "问一下", "车", "险", "的事"]
    assert "".join(w.word for w in turn.words) == turn.text


def test_byte_level_slips_become_the_comma_they_stand_for_and_broken_bytes_go():
    # real whisper-base int8 outputs of the committed calls (make run, recordings/)
    assert asr.convert_script("您好４新称通信、工号801４", "simplified") == "您好，新称通信、工号801。"
    assert (asr.convert_script("你们怎么回事Ｇ我这个月的账单多扣了两百多块钱Ｇ", "simplified")
            == "你们怎么回事，我这个月的账单多扣了两百多块钱。")
    assert asr.convert_script("您好１这里是安定保险客户服务", "simplified") == "您好，这里是安定保险客户服务"
    assert (asr.convert_script("何对无物Ｇ线年Ｇ请您稍等Ｇ我帮您查询", "simplified")
            == "何对无物，线年，请您稍等，我帮您查询")
    assert asr.convert_script("好的﹔谢谢", "simplified") == "好的，谢谢"
    # a token that fits stays a token, folded to half width
    assert asr.convert_script("要拍Ｘ光吗", "simplified") == "要拍X光吗"
    assert asr.convert_script("第１次打电话", "simplified") == "第1次打电话"
    assert asr.convert_script("办了４Ｇ套餐", "simplified") == "办了４Ｇ套餐"  # not alone: no slip
    assert asr.convert_script("价格是４５元", "simplified") == "价格是４５元"  # a real number stays
    assert asr.convert_script("感谢您的来电\ufffd再见", "simplified") == "感谢您的来电再见"


def test_speech_without_words_is_found_for_a_second_pass():
    rate = 16000
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(rate * 30) * 10 ** (-55 / 20)).astype(np.float32)
    tone = (0.1 * np.sin(2 * np.pi * 300 * np.arange(rate * 3) / rate)).astype(np.float32)
    for start in (1.0, 10.0, 20.0):  # three utterances; Whisper "heard" only the first and last
        x[int(start * rate): int(start * rate) + len(tone)] += tone
    heard = [segment([word(1.0, 2.0, "您好"), word(2.0, 4.0, "请稍等")]),
             segment([word(20.0, 23.0, "再见")])]
    gaps = asr.untranscribed_speech(x, rate, heard)
    assert len(gaps) == 1 and abs(gaps[0][0] - 10.0) < 0.2 and abs(gaps[0][1] - 13.0) < 0.2
    assert asr.untranscribed_speech(x[: rate * 5], rate, heard[:1]) == []


def test_a_long_utterance_with_a_few_words_has_its_rest_found_and_an_echo_beside_it_replaced():
    rate = 16000
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(rate * 20) * 10 ** (-55 / 20)).astype(np.float32)
    x[rate * 2: rate * 14] += (0.1 * np.sin(2 * np.pi * 300 * np.arange(rate * 12) / rate)).astype(np.float32)
    echo = segment([word(2.0, 3.5, "请问有什么可以帮您")])  # the prompt, for 12 s of speech
    gaps = asr.untranscribed_speech(x, rate, [echo])
    assert len(gaps) == 1 and abs(gaps[0][0] - 3.5) < 0.2 and abs(gaps[0][1] - 14.0) < 0.2

    class Model:  # stands in for Whisper: hears the clip it is given as one segment
        clips: list[float] = []

        def transcribe(self, clip, **_):
            self.clips.append(len(clip) / rate)
            seg = type("S", (), dict(start=0.1, end=len(clip) / rate - 0.1, text="我最喜欢夏天",
                                      avg_logprob=-0.2, no_speech_prob=0.0, compression_ratio=1.0,
                                      temperature=0.0, words=None))
            return [seg], None

    settings = load_settings(environ={}).asr
    model = Model()
    kept = asr._fill_gaps(model, x, [echo], settings, "zh", asr.prompt_for(settings, "zh").prompt)
    assert [s.text for s in kept] == ["我最喜欢夏天"]  # the echo went, and its span was heard again
    assert model.clips[0] == pytest.approx(12.6, abs=0.3)  # from the echo's start, padded
    said = segment([word(2.0, 3.5, "我想查一下话费")])  # not the prompt: kept beside the new words
    assert [s.text for s in asr._fill_gaps(Model(), x, [said], settings, "zh", "请问有什么可以帮您")] \
        == ["我想查一下话费", "我最喜欢夏天"]


def test_channels_swap_when_the_customer_side_sounds_like_the_agent_and_the_agent_side_like_a_caller():
    from speechqa.config import ChannelSettings

    agent_side = "喂你好，我想问一下我的订单怎么回事，为什么还没到？你们到底什么时候发货"  # really the caller
    customer_side = "您好，请您稍等，我帮您查询一下。给您添麻烦了，请问还有什么可以帮您"  # really the agent
    assert asr.agent_script_score(agent_side) < 0 < asr.agent_script_score(customer_side)
    swapped = asr.channel_roles(2, ChannelSettings(), {0: agent_side, 1: customer_side})
    assert swapped == {0: "customer", 1: "agent"}
    # a curt agent who says little of the script, opposite a side that talks like a caller
    curt = "说吧。这个我们管不了，查不到"
    assert asr.channel_roles(2, ChannelSettings(), {0: agent_side, 1: curt}) == {0: "customer", 1: "agent"}
    # two agent-like sides within the margin keep the configured roles
    both = "您好请您稍等"
    assert asr.channel_roles(2, ChannelSettings(), {0: both, 1: both + "，帮您"}) == {0: "agent", 1: "customer"}


def test_the_side_that_answers_an_inbound_call_is_the_agent_when_neither_speaks_a_script():
    from speechqa.config import ChannelSettings

    curt = "喂。哪个小区的？几号楼"  # a curt agent: no script phrase, no caller phrase
    caller = "我家水管漏了，怎么回事啊，麻烦派个人来看看吧"  # one caller's phrase
    texts = {0: caller, 1: curt}
    assert asr.agent_script_score(curt) == 0 and asr.agent_script_score(caller) == -2
    # the configured agent channel (0) spoke second: the customer side answered the line
    assert asr.channel_roles(2, ChannelSettings(), texts, first=1) == {0: "customer", 1: "agent"}
    # unknown or outbound (first=None), or channel 0 answered: the configured roles stand
    # (one caller's phrase is not enough to override the configuration)
    assert asr.channel_roles(2, ChannelSettings(), texts) == {0: "agent", 1: "customer"}
    assert asr.channel_roles(2, ChannelSettings(), texts, first=0) == {0: "agent", 1: "customer"}
    # answering first cannot outvote a side that speaks the agent's script
    script = "您好，请您稍等，我帮您查询一下，请问还有什么可以帮您"
    assert asr.channel_roles(2, ChannelSettings(), {0: script, 1: curt}, first=1) == {0: "agent", 1: "customer"}


def test_to_turns_takes_the_first_speaker_only_on_inbound_calls():
    caller = [segment([word(3.0, 4.5, "我家水管漏了，怎么回事啊，"), word(4.5, 6.0, "麻烦派个人来看看吧")])]
    agent = [segment([word(0.5, 1.0, "喂。"), word(7.0, 8.0, "几号楼")])]  # wired on channel 1
    t = transcript(caller, agent)

    def roles(direction):
        turns = asr.to_turns(t, "c", ChannelSettings(), TurnSettings(), GuardSettings(), None, direction)
        return {x.channel: x.role for x in turns}

    assert roles("inbound") == roles("") == {0: "customer", 1: "agent"}  # channel 1 answered the line
    assert roles("outbound") == {0: "agent", 1: "customer"}  # the customer answers: no evidence
