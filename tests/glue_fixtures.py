# ruff: noqa: E501  (one TSV row per line reads better than wrapped fragments)
"""Tiny hand-made files in the original GLUE TSV layout, for the tasks ../shared/data does not ship.

Written to a temporary directory at test time (never committed as data files): headers and column
orders are those of the GLUE distribution; the rows are invented. Fields are separated by tabs (\t).
"""

from pathlib import Path

MNLI_COLUMNS = "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2"

FILES: dict[str, str] = {
    "glue/MNLI/dev_matched.tsv": (
        MNLI_COLUMNS + "\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n"
        "0\t63735\t63735n\tslate\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tThe new rights are nice enough\tEveryone really likes the newest benefits\tneutral\tentailment\tneutral\tneutral\tneutral\tneutral\n"
    ),
    "glue/MNLI/dev_mismatched.tsv": (
        MNLI_COLUMNS + "\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n"
        "0\t75290\t75290c\tletters\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tYour contribution helped make it possible.\tYour contributions were of no help.\tcontradiction\tcontradiction\tcontradiction\tcontradiction\tcontradiction\tcontradiction\n"
        "1\t133794\t133794c\tverbatim\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tThe answer is yes.\tThe answer is no.\tcontradiction\tcontradiction\tneutral\tcontradiction\tcontradiction\tcontradiction\n"
    ),
    "glue/MNLI/train.tsv": (
        MNLI_COLUMNS + "\tlabel1\tgold_label\n"
        "0\t31193\t31193n\tgovernment\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tConceptually cream skimming has two basic dimensions.\tProduct and geography are what make cream skimming work.\tneutral\tneutral\n"
        "1\t101457\t101457e\ttelephone\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tyou know during the season and i guess\tYou lose the things to the following level.\tentailment\tentailment\n"
        "2\t134793\t134793e\tfiction\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tOne of our number will carry out your instructions minutely.\tA member of my team will execute your orders.\tcontradiction\tcontradiction\n"
    ),
    "glue/QQP/dev.tsv": (
        "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
        "0\t5\t6\tWhy are people so obsessed with cats?\tWhy do people love cats?\t1\n"
        "1\t7\t8\tWhat is the capital of France?\tHow tall is Everest?\t0\n"
    ),
    "glue/QQP/train.tsv": (
        "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
        "0\t1\t2\tWhat is the step by step guide to invest in share market?\tWhat is the step by step guide to invest in share market in india?\t0\n"
        "1\t3\t4\tHow do I read and find my YouTube comments?\tHow can I see all my Youtube comments?\t1\n"
    ),
    "glue/RTE/dev.tsv": (
        "index\tsentence1\tsentence2\tlabel\n"
        "0\tCats sleep a lot.\tCats are awake.\tnot_entailment\n"
        "1\tHe bought bread.\tHe bought food.\tentailment\n"
    ),
    "glue/RTE/train.tsv": (
        "index\tsentence1\tsentence2\tlabel\n"
        "0\tA dog runs in the park.\tAn animal is outside.\tentailment\n"
        "1\tThe sky is green.\tIt rains daily.\tnot_entailment\n"
        '2\t"Quoted" start of a field.\tQuotes are kept.\tentailment\n'
    ),
    "glue/STS-B/dev.tsv": (
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
        "0\tmain-captions\tMSRvid\t2012test\t0000\tnone\tnone\tA man with a hard hat is dancing.\tA man wearing a hard hat is dancing.\t5.000\n"
        "1\tmain-captions\tMSRvid\t2012test\t0002\tnone\tnone\tA young child is riding a horse.\tA child is riding a horse.\t4.750\n"
    ),
    "glue/STS-B/train.tsv": (
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
        "0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane is taking off.\tAn air plane is taking off.\t5.000\n"
        "1\tmain-captions\tMSRvid\t2012test\t0004\tnone\tnone\tA man is playing a flute.\tA man is playing a bamboo flute.\t3.800\n"
        "2\tmain-news\theadlines\t2013\t0010\tnone\tnone\tStocks fall.\tIt snowed in May.\t0.000\n"
    ),
    "glue/WNLI/dev.tsv": (
        "index\tsentence1\tsentence2\tlabel\n"
        "0\tThe drain is clogged with hair. It has to be cleaned.\tThe hair has to be cleaned.\t0\n"
        "1\tJane knocked on Susan's door but she did not answer.\tSusan did not answer.\t1\n"
    ),
    "glue/WNLI/train.tsv": (
        "index\tsentence1\tsentence2\tlabel\n"
        "0\tI stuck a pin through a carrot. When I pulled the pin out, it had a hole.\tThe carrot had a hole.\t1\n"
        "1\tJohn couldn't see the stage with Billy in front of him because he is so short.\tBilly is so short.\t0\n"
    ),
}


def write_glue_fixtures(root: Path) -> Path:
    """Write every fixture file under root (as root/glue/<Task>/<split>.tsv) and return root."""
    for relative, text in FILES.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root
