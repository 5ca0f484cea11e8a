"""ssl.principal.mapping.rules: Kafka's documented examples and SslPrincipalMapperTest cases."""

from __future__ import annotations

import pytest

from strom.config.topic import ConfigError
from strom.security.principal_rules import NoMatchingRule, PrincipalMapper, split_rules

DOCS_RULES = ("RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,"
              "RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L,"
              "RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L,"
              "DEFAULT")


def rules_of(text: str) -> list[str]:
    return [str(rule) for rule in PrincipalMapper.parse(text).rules]


def test_kafka_docs_example() -> None:
    mapper = PrincipalMapper.parse(DOCS_RULES)
    assert len(mapper.rules) == 4
    assert mapper.name("CN=serviceuser,OU=ServiceUsers,O=Unknown,L=Unknown,ST=Unknown,C=Unknown"
                       ) == "serviceuser"
    assert mapper.name("CN=adminUser,OU=Admin,O=Unknown,L=Unknown,ST=Unknown,C=Unknown"
                       ) == "adminuser@admin"
    assert mapper.name("CN=Duke,O=Sun") == "duke"
    assert mapper.name("O=Example,C=US") == "O=Example,C=US"


def test_kafka_mapper_cases() -> None:
    mapper = PrincipalMapper.parse(", ".join([
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L",
        "RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L",
        "RULE:^cn=(.*?),ou=(.*?),dc=(.*?),dc=(.*?)$/$1@$2/U",
        "RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/U",
        "DEFAULT",
    ]))
    assert mapper.name("CN=Duke,OU=ServiceUsers,O=Org,C=US") == "duke"
    assert mapper.name("CN=Duke,OU=SME,O=mycp,L=Fulton,ST=MD,C=US") == "duke@sme"
    assert mapper.name("cn=duke,ou=sme,dc=mycp,dc=com") == "DUKE@SME"
    assert mapper.name("cN=duke,OU=JavaSoft,O=Sun Microsystems") == "DUKE"
    default = "OU=JavaSoft,O=Sun Microsystems,C=US"
    assert mapper.name(default) == default


def test_comma_with_whitespace() -> None:
    mapper = PrincipalMapper.parse("RULE:^CN=((\\\\, *|\\w)+)(,.*|$)/$1/,DEFAULT")
    assert mapper.name("CN=Tkac\\, Adam,OU=ITZ,DC=geodis,DC=cz") == "Tkac\\, Adam"


@pytest.mark.parametrize("text", [
    "DEFAULT",
    "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/",
    "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L, DEFAULT",
    "RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/",
    "RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L",
    "RULE:^cn=(.?),ou=(.?),dc=(.?),dc=(.?)$/$1@$2/U",
    "RULE:^CN=([^,ADEFLTU,]+)(,.*|$)/$1/",
    "RULE:^CN=([^,DEFAULT,]+)(,.*|$)/$1/",
])
def test_valid_rules(text: str) -> None:
    PrincipalMapper.parse(text)


@pytest.mark.parametrize("text", [
    "default",
    "DEFAUL",
    "DEFAULT/L",
    "DEFAULT/U",
    "RULE:CN=(.*?),OU=ServiceUsers.*/$1",
    "rule:^CN=(.*?),OU=ServiceUsers.*$/$1/",
    "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L/U",
    "RULE:^CN=(.*?),OU=ServiceUsers.*$/L",
    "RULE:^CN=(.*?),OU=ServiceUsers.*$/U",
    "RULE:^CN=(.*?),OU=ServiceUsers.*$/LU",
])
def test_invalid_rules(text: str) -> None:
    with pytest.raises(ConfigError, match=r"ssl\.principal\.mapping\.rules: invalid rule"):
        PrincipalMapper.parse(text)


@pytest.mark.parametrize(("text", "expected"), [
    ("DEFAULT", ["DEFAULT"]),
    ("RULE://", ["RULE:/"]),
    ("RULE:/.*/", ["RULE:/.*"]),
    ("RULE:/.*/L", ["RULE:/.*/L"]),
    ("RULE://,DEFAULT", ["RULE:/", "DEFAULT"]),
    ("  RULE:// ,  DEFAULT  ", ["RULE:/", "DEFAULT"]),
    ("  RULE:   /     / ,  DEFAULT  ", ["RULE:   /     ", "DEFAULT"]),
    ("  RULE:  /     /U   ,DEFAULT  ", ["RULE:  /     /U", "DEFAULT"]),
    ("  RULE:([A-Z]*)/$1/U   ,RULE:([a-z]+)/$1/,   DEFAULT  ",
     ["RULE:([A-Z]*)/$1/U", "RULE:([a-z]+)/$1", "DEFAULT"]),
    # empty rules are ignored
    (",,RULE://,,,DEFAULT,,", ["RULE:/", "DEFAULT"]),
    (",  , RULE: /   /    ,,,   DEFAULT, ,   ", ["RULE: /   ", "DEFAULT"]),
    ("     ,  , RULE:   /  /U    ,,  ,DEFAULT, ,", ["RULE:   /  /U", "DEFAULT"]),
    # escape sequences
    ("RULE:\\/\\\\\\(\\)\\n\\t/\\/\\//", ["RULE:\\/\\\\\\(\\)\\n\\t/\\/\\/"]),
    ("RULE:\\**\\/+/*/L,RULE:\\/*\\**/**/", ["RULE:\\**\\/+/*/L", "RULE:\\/*\\**/**"]),
])
def test_rules_splitting(text: str, expected: list[str]) -> None:
    assert rules_of(text) == expected


def test_rules_rule() -> None:
    """Kafka's 'rules rule' splitting case: patterns and replacements full of RULE: and ,"""
    text = ("RULE:,RULE:,/,RULE:,\\//U,RULE:,/RULE:,/,RULE:,RULE:,/L,RULE:,/L,RULE:, "
            "DEFAULT, /DEFAULT/,DEFAULT")
    assert split_rules(text) == [
        "RULE:,RULE:,/,RULE:,\\//U", "RULE:,/RULE:,/", "RULE:,RULE:,/L,RULE:,/L",
        "RULE:, DEFAULT, /DEFAULT/", "DEFAULT", ""]
    assert rules_of(text) == [
        "RULE:,RULE:,/,RULE:,\\//U", "RULE:,/RULE:,", "RULE:,RULE:,/L,RULE:,/L",
        "RULE:, DEFAULT, /DEFAULT", "DEFAULT"]


def test_only_empty_rules_is_an_error() -> None:
    with pytest.raises(ConfigError, match="holds no rule"):
        PrincipalMapper.parse(",   , , ,      , , ,   ")


def test_default_when_unset() -> None:
    assert PrincipalMapper.parse(None).name("CN=a,O=b") == "CN=a,O=b"
    assert PrincipalMapper.parse().name("CN=a") == "CN=a"


def test_no_matching_rule() -> None:
    mapper = PrincipalMapper.parse("RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/")
    with pytest.raises(NoMatchingRule, match=r"No rules apply to CN=x,OU=Other"):
        mapper.name("CN=x,OU=Other")


def test_first_match_wins_and_whole_name_must_match() -> None:
    mapper = PrincipalMapper.parse("RULE:CN=([a-z]+)/$1/,RULE:CN=([a-z]+),.*/first-$1/,DEFAULT")
    assert mapper.name("CN=alice") == "alice"
    # the first rule's pattern matches a prefix only: Java's matches() needs the whole name
    assert mapper.name("CN=alice,O=x") == "first-alice"


def test_replacement_java_semantics() -> None:
    # a group past the pattern's groups stays literal (Kafka's escapeLiteralBackReferences)
    three = PrincipalMapper.parse("RULE:^CN=(.*?),OU=(.*?),O=(.*?)$/$1@$4/")
    assert three.name("CN=a,OU=b,O=c") == "a@$4"
    # $0 is the whole match; \$ a dollar; \/ a slash; a group that did not take part is empty
    assert PrincipalMapper.parse("RULE:CN=(x)?(.*)/$0|\\$2|$1|\\/$2/").name("CN=y") == (
        "CN=y|$2||/y")
    # $12 is group 1 then 2 when there are fewer than 12 groups
    assert PrincipalMapper.parse("RULE:CN=(.)(.)/$12/").name("CN=ab") == "a2"
    # Java's named groups
    assert PrincipalMapper.parse("RULE:CN=(?<user>[^,]*).*/${user}/U").name("CN=bo,O=x") == "BO"


@pytest.mark.parametrize(("text", "message"), [
    ("RULE:CN=(.*/$1/", "not a valid regular expression"),
    ("RULE:CN=.*/$1/", "has no groups"),
    ("RULE:CN=(.*)/$x/", r"\$ must be followed by a group number"),
    ("RULE:CN=(.*)/$1$/", "lone \\$"),
    ("RULE:CN=(.*)/${nope}/", "does not name"),
])
def test_bad_patterns_and_replacements(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PrincipalMapper.parse(text)


def test_repr_is_kafkas() -> None:
    assert repr(PrincipalMapper.parse("RULE:a(b)/$1/L, DEFAULT")) == (
        "PrincipalMapper(rules = [RULE:a(b)/$1/L, DEFAULT])")
