"""Client addresses and the CIDR allowlists (the console's, /metrics')."""

import ipaddress
import logging
from functools import lru_cache

from django.conf import settings

logger = logging.getLogger("kaizen.security")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_ip(request) -> str:
    """The address the request came from. A proxy's header is believed only when the operator
    named it (KAIZEN_TRUSTED_PROXY_HEADER): its last entry, the address their own proxy saw, since
    anything before it is whatever the client chose to send."""
    header = settings.KAIZEN_TRUSTED_PROXY_HEADER
    if header:
        forwarded = request.META.get("HTTP_" + header.upper().replace("-", "_"), "")
        candidate = forwarded.split(",")[-1].strip()
        if candidate and _valid_ip(candidate):
            return candidate
    return request.META.get("REMOTE_ADDR", "")


def _valid_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=16)
def parse_networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    """Raises ValueError naming the entry that is not a CIDR (the system check reports it)."""
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError as exc:
            raise ValueError(f"{cidr!r} is not an address or CIDR block") from exc
    return tuple(networks)


def ip_allowed(*, ip: str, cidrs: list[str] | tuple[str, ...]) -> bool:
    """True when the list is empty (no allowlist configured) or `ip` falls in one of its blocks.
    A malformed list admits nobody: a typo must not open the door."""
    if not cidrs:
        return True
    try:
        networks = parse_networks(tuple(cidrs))
        address = ipaddress.ip_address(ip)
    except ValueError:
        logger.warning("address refused by an allowlist it cannot be checked against", extra={"ip": ip})
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def console_ip_allowed(request) -> bool:
    return ip_allowed(ip=client_ip(request), cidrs=settings.KAIZEN_ADMIN_IP_ALLOWLIST)
