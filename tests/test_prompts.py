from __future__ import annotations

import pytest

from recal.data.records import Question
from recal.prompts import EXEMPLARS, build_prompt, stops_at_newline

Q = Question("x", "What is the capital of Peru?", ("Lima",))


@pytest.mark.parametrize("style", ["concise", "sentence", "cot"])
def test_base_prompts_are_k_shot_text_in_the_style(style):
    prompt = build_prompt(Q, style, chat=False)
    assert prompt.text is not None and prompt.messages is None
    assert prompt.text.count("Q: ") == len(EXEMPLARS) + 1
    assert prompt.text.endswith("Q: What is the capital of Peru?\nA:")
    assert f"A: {EXEMPLARS[0].answer(style)}\n" in prompt.text


def test_chat_prompts_are_one_user_turn_with_the_style_instruction():
    prompt = build_prompt(Q, "concise", chat=True)
    assert prompt.messages is not None and len(prompt.messages) == 1
    role, content = prompt.messages[0]
    assert role == "user" and content.startswith(Q.question) and "only the answer" in content
    two_shot = build_prompt(Q, "sentence", chat=True, shots=2)
    assert [r for r, _ in two_shot.messages] == ["user", "assistant", "user", "assistant", "user"]


def test_an_exemplar_is_never_its_own_question():
    prompt = build_prompt(EXEMPLARS[0].question, "concise", chat=False)
    assert prompt.text.count(EXEMPLARS[0].question) == 1
    assert prompt.text.count("Q: ") == len(EXEMPLARS)  # four examples and the question


def test_newline_stopping_by_style():
    assert stops_at_newline("concise", chat=True) and stops_at_newline("cot", chat=False)
    assert not stops_at_newline("cot", chat=True)


def test_bad_style_and_shots_are_refused():
    with pytest.raises(ValueError, match="style must be one of concise, sentence, cot, got 'poem'"):
        build_prompt(Q, "poem", chat=True)
    with pytest.raises(ValueError, match="shots must be between 0 and 5, got 9"):
        build_prompt(Q, "concise", chat=False, shots=9)
