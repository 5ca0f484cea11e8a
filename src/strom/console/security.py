"""The console's ACL and SCRAM user pages (the Admin API: DescribeAcls, CreateAcls, DeleteAcls,
DescribeUserScramCredentials, AlterUserScramCredentials)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web
from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from strom.cli.common import ClientOptions, CliError, fail, kafka_error, outcome
from strom.console import kafka
from strom.console.html import csrf_field, esc, table

if TYPE_CHECKING:
    from strom.console.pages import Pages

RESOURCE_TYPES: Final = ("TOPIC", "GROUP", "BROKER", "TRANSACTIONAL_ID")
PATTERNS: Final = ("LITERAL", "PREFIXED")
OPERATIONS: Final = ("ALL", "READ", "WRITE", "CREATE", "DELETE", "ALTER", "DESCRIBE",
                     "CLUSTER_ACTION", "DESCRIBE_CONFIGS", "ALTER_CONFIGS",
                     "IDEMPOTENT_WRITE")
PERMISSIONS: Final = ("ALLOW", "DENY")
MECHANISMS: Final = ("SCRAM-SHA-256", "SCRAM-SHA-512")
ITERATIONS: Final = 8192


@dataclass(frozen=True, slots=True)
class Acl:
    resource_type: str
    name: str
    pattern: str
    principal: str
    host: str
    operation: str
    permission: str

    def binding(self) -> AclBinding:
        return AclBinding(ResourceType[self.resource_type], self.name,
                          ResourcePatternType[self.pattern], self.principal, self.host,
                          AclOperation[self.operation], AclPermissionType[self.permission])

    def filter(self) -> AclBindingFilter:
        return AclBindingFilter(ResourceType[self.resource_type], self.name,
                                ResourcePatternType[self.pattern], self.principal, self.host,
                                AclOperation[self.operation],
                                AclPermissionType[self.permission])


def list_acls(admin: AdminClient, client: ClientOptions) -> list[Acl]:
    anything: tuple[Any, ...] = (ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                                 AclOperation.ANY, AclPermissionType.ANY)
    flt = AclBindingFilter(*anything)
    try:
        found = outcome(admin.describe_acls(flt, request_timeout=client.request_timeout),
                        client)
    except KafkaException as exc:
        raise fail(exc, client, action="listing ACLs") from None
    acls = [Acl(b.restype.name, b.name, b.resource_pattern_type.name, b.principal, b.host,
                b.operation.name, b.permission_type.name) for b in found]
    return sorted(acls, key=lambda a: (a.resource_type, a.name, a.principal, a.operation))


def create_acl(admin: AdminClient, client: ClientOptions, acl: Acl) -> None:
    for future in admin.create_acls([acl.binding()],
                                    request_timeout=client.request_timeout).values():
        try:
            outcome(future, client)
        except KafkaException as exc:
            raise fail(exc, client, action="creating the ACL") from None


def delete_acl(admin: AdminClient, client: ClientOptions, acl: Acl) -> int:
    removed = 0
    for future in admin.delete_acls([acl.filter()],
                                    request_timeout=client.request_timeout).values():
        try:
            removed += len(outcome(future, client))
        except KafkaException as exc:
            raise fail(exc, client, action="deleting the ACL") from None
    return removed


def list_users(admin: AdminClient, client: ClientOptions) -> list[tuple[str, str, int]]:
    every: Any = admin.describe_user_scram_credentials(request_timeout=client.request_timeout)
    try:
        described = outcome(every, client)
    except KafkaException as exc:
        raise fail(exc, client, action="listing the users") from None
    return sorted((name, info.mechanism.name.replace("_", "-"), int(info.iterations))
                  for name, description in described.items()
                  for info in description.scram_credential_infos)


def mechanism_of(name: str) -> ScramMechanism:
    if name not in MECHANISMS:
        raise CliError(f"mechanism must be one of {', '.join(MECHANISMS)}")
    return ScramMechanism[name.replace("-", "_")]


def alter_users(admin: AdminClient, client: ClientOptions, alterations: list[Any],
                action: str) -> None:
    futures = admin.alter_user_scram_credentials(alterations,
                                                 request_timeout=client.request_timeout)
    for future in futures.values():
        try:
            outcome(future, client)
        except KafkaException as exc:
            error = kafka_error(exc)
            if error is not None and error.name() == "RESOURCE_NOT_FOUND":
                raise CliError(f"{action} failed: no such user") from None
            raise fail(exc, client, action=action) from None


def set_user(admin: AdminClient, client: ClientOptions, name: str, mechanism: str,
             password: str) -> None:
    if not name or not password:
        raise CliError("a user needs a name and a password")
    alter_users(admin, client, [UserScramCredentialUpsertion(
        name, ScramCredentialInfo(mechanism_of(mechanism), ITERATIONS), password.encode())],
        f"setting user {name}")


def delete_user(admin: AdminClient, client: ClientOptions, name: str, mechanism: str) -> None:
    alter_users(admin, client, [UserScramCredentialDeletion(name, mechanism_of(mechanism))],
                f"deleting user {name}")


# --- pages --------------------------------------------------------------------------------

def select(name: str, values: tuple[str, ...]) -> str:
    options = "".join(f'<option value="{esc(v)}">{esc(v)}</option>' for v in values)
    return f'<select name="{esc(name)}">{options}</select>'


def acl_from(form: Any) -> Acl:
    def pick(key: str, allowed: tuple[str, ...]) -> str:
        value = str(form.get(key, "")).upper()
        if value not in allowed:
            raise CliError(f"{key} must be one of {', '.join(allowed)}")
        return value

    resource_type = pick("resource_type", RESOURCE_TYPES)
    name = str(form.get("name", "")).strip()
    if resource_type == "BROKER":
        name = "kafka-cluster"
    principal = str(form.get("principal", "")).strip()
    if not name or ":" not in principal:
        raise CliError("an ACL needs a resource name and a principal such as User:alice")
    return Acl(resource_type, name, pick("pattern", PATTERNS), principal,
               str(form.get("host", "")).strip() or "*", pick("operation", OPERATIONS),
               pick("permission", PERMISSIONS))


class SecurityPages:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages

    async def acls(self, request: web.Request) -> web.StreamResponse:
        found: list[Acl] = await self.pages.admin_call(request, list_acls)
        csrf = self.pages.session(request).csrf
        rows = []
        for a in found:
            remove = ""
            if self.pages.writable:
                hidden = "".join(
                    f'<input type="hidden" name="{k}" value="{esc(getattr(a, k))}">'
                    for k in ("resource_type", "name", "pattern", "principal", "host",
                              "operation", "permission"))
                remove = (f'<form method="post" action="/acls/delete" class="inline confirm" '
                          f'data-confirm="Delete this ACL?">{csrf_field(csrf)}{hidden}'
                          '<button class="danger">delete</button></form>')
            rows.append((esc("CLUSTER" if a.resource_type == "BROKER" else a.resource_type),
                         esc(a.name), esc(a.pattern), esc(a.principal), esc(a.host),
                         esc(a.operation), esc(a.permission), remove))
        body = table(("resource", "name", "pattern", "principal", "host", "operation",
                      "permission", ""), rows, "acls", "no ACLs")
        if self.pages.writable:
            body += f"""<h2>Add an ACL</h2>
<form method="post" action="/acls" class="card" id="add-acl">{csrf_field(csrf)}
<label>resource {select("resource_type", RESOURCE_TYPES)}</label>
<label>name <input name="name" placeholder="orders (BROKER: kafka-cluster)"></label>
<label>pattern {select("pattern", PATTERNS)}</label>
<label>principal <input name="principal" placeholder="User:alice" required></label>
<label>host <input name="host" value="*"></label>
<label>operation {select("operation", OPERATIONS)}</label>
<label>permission {select("permission", PERMISSIONS)}</label>
<button type="submit">add</button></form>"""
        return self.pages.frame(request, "ACLs", body)

    async def add_acl(self, request: web.Request) -> web.StreamResponse:
        acl = acl_from(await request.post())
        await self.pages.admin_call(request, create_acl, acl)
        raise web.HTTPFound("/acls?msg=" + kafka.quote_text(f"added the ACL for {acl.principal}"))

    async def delete_acl(self, request: web.Request) -> web.StreamResponse:
        acl = acl_from(await request.post())
        removed: int = await self.pages.admin_call(request, delete_acl, acl)
        raise web.HTTPFound("/acls?msg=" + kafka.quote_text(f"deleted {removed} ACL(s)"))

    async def users(self, request: web.Request) -> web.StreamResponse:
        found: list[tuple[str, str, int]] = await self.pages.admin_call(request, list_users)
        csrf = self.pages.session(request).csrf
        rows = []
        for name, mechanism, iterations in found:
            remove = ""
            if self.pages.writable:
                remove = (f'<form method="post" action="/users/delete" class="inline confirm" '
                          f'data-confirm="Delete {esc(name)}\'s {esc(mechanism)} credential?">'
                          f'{csrf_field(csrf)}<input type="hidden" name="name" '
                          f'value="{esc(name)}"><input type="hidden" name="mechanism" '
                          f'value="{esc(mechanism)}"><button class="danger">delete</button>'
                          "</form>")
            rows.append((esc(name), esc(mechanism), esc(iterations), remove))
        body = table(("user", "mechanism", "iterations", ""), rows, "users", "no SCRAM users")
        if self.pages.writable:
            body += f"""<h2>Set a user's password</h2>
<form method="post" action="/users" class="card" id="set-user">{csrf_field(csrf)}
<label>user <input name="name" required></label>
<label>mechanism {select("mechanism", MECHANISMS)}</label>
<label>password <input name="password" type="password" autocomplete="new-password"
 required></label><button type="submit">set</button></form>"""
        return self.pages.frame(request, "SCRAM users", body)

    async def set_user(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        name = str(form.get("name", "")).strip()
        await self.pages.admin_call(request, set_user, name, str(form.get("mechanism", "")),
                                    str(form.get("password", "")))
        raise web.HTTPFound("/users?msg=" + kafka.quote_text(f"user {name} set"))

    async def delete_user(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        name = str(form.get("name", "")).strip()
        await self.pages.admin_call(request, delete_user, name, str(form.get("mechanism", "")))
        raise web.HTTPFound("/users?msg=" + kafka.quote_text(f"user {name} deleted"))
