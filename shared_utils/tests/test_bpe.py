from shared_utils.bpe import train_bpe


def test_specials_come_first_and_text_round_trips_after_nfkc():
    texts = ["Hyvää huomenta, kissa!", "Good morning, cat!", "ﬁnal ﬁles"] * 20
    tok = train_bpe(texts, 300, ["<pad>", "<s>", "</s>", "<unk>"])
    assert [tok.token_to_id(t) for t in ("<pad>", "<s>", "</s>", "<unk>")] == [0, 1, 2, 3]
    assert tok.decode(tok.encode("Hyvää huomenta").ids).strip() == "Hyvää huomenta"
    assert tok.decode(tok.encode("ﬁles").ids).strip() == "files"  # NFKC unfolds the ligature
    assert tok.encode("日本").ids and 3 not in tok.encode("日本").ids  # byte-level: nothing is unknown
