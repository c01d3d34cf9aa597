"""The one HTTP seam for research sources: explicit timeouts, conditional GET, an honest
User-Agent, a size cap, and every failure turned into FetchError saying transient or permanent.

feedparser and praw never fetch URLs themselves here: feedparser's own fetching has no timeout.
"""

from dataclasses import dataclass
from functools import lru_cache

import requests
from django.conf import settings

# Who we are and where to read about it, as polite crawlers say
# (https://www.rfc-editor.org/rfc/rfc9110#name-user-agent).
USER_AGENT = "KaizenResearch/1.0 (daily product research; +https://github.com/kaizen-ops/kaizen)"

# 408 timeout, 425 too early, 429 rate limited, 5xx: worth trying again later. Other 4xx will
# fail the same way tomorrow (a moved or removed page) and count towards auto-disable faster.
TRANSIENT_STATUSES = frozenset({408, 425, 429})


class FetchError(Exception):
    def __init__(self, message: str, *, transient: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.status = status


@dataclass(frozen=True)
class Fetched:
    status: int
    body: bytes
    etag: str
    last_modified: str
    url: str

    @property
    def not_modified(self) -> bool:
        return self.status == 304


@lru_cache(maxsize=1)
def _session() -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    # Threads share the pool; one source at a time per connection is enough.
    adapter = requests.adapters.HTTPAdapter(pool_connections=32, pool_maxsize=32, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def http_get(*, url: str, etag: str = "", last_modified: str = "", accept: str = "*/*") -> Fetched:
    """GET `url` with the validators of the last fetch; a 304 comes back with an empty body."""
    headers = {"Accept": accept}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    limit = settings.KAIZEN_RESEARCH_MAX_BYTES
    try:
        with _session().get(url, headers=headers, timeout=settings.KAIZEN_RESEARCH_TIMEOUT, stream=True) as response:
            if response.status_code == 304:
                return Fetched(304, b"", etag, last_modified, response.url)
            if response.status_code >= 400:
                transient = response.status_code in TRANSIENT_STATUSES or response.status_code >= 500
                raise FetchError(
                    f"HTTP {response.status_code} from {url}", transient=transient, status=response.status_code
                )
            body = bytearray()
            for chunk in response.iter_content(64 * 1024):
                body += chunk
                if len(body) > limit:
                    raise FetchError(f"{url}: body larger than {limit} bytes", transient=False)
            return Fetched(
                status=response.status_code,
                body=bytes(body),
                etag=response.headers.get("ETag", ""),
                last_modified=response.headers.get("Last-Modified", ""),
                url=response.url,
            )
    except requests.Timeout as exc:
        raise FetchError(f"{url}: timed out ({exc.__class__.__name__})", transient=True) from exc
    except requests.ConnectionError as exc:
        raise FetchError(f"{url}: connection failed: {exc}", transient=True) from exc
    except requests.RequestException as exc:
        raise FetchError(f"{url}: {exc}", transient=False) from exc
