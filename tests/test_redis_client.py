"""The ingest path's Redis call runs on a connection of its thread's own (kaizen_site.redis_client)."""

import os
import threading

import pytest

from kaizen_site import redis_client


def test_each_thread_keeps_one_connection_of_its_own():
    kaizen = redis_client.get()
    mine = kaizen.own_connection()
    assert mine is kaizen.own_connection()  # kept: no pool to go through on the next report
    assert mine.connection is not None  # one dedicated connection, not the shared pool's
    others = []
    threads = [threading.Thread(target=lambda: others.append(kaizen.own_connection())) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(c) for c in [mine, *others]}) == 3
    assert all(c.ping() for c in [mine, *others])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_opens_its_own_instead_of_sharing_the_parents_socket():
    kaizen = redis_client.get()
    parent = kaizen.own_connection()
    parent.ping()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answers whether it got a new client that works
        try:
            child = kaizen.own_connection()
            ok = (
                child is not parent
                and child.ping()
                and kaizen.append_within_quota(
                    stream="kaizen:test:fork", quota_key="kaizen:test:fork:q", quota=10, ttl=5, payloads=[b"x"]
                )
            )
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    assert parent.ping()  # the parent's connection was not disturbed by the child
    assert redis_client.get().client.xlen("kaizen:test:fork") == 1
    redis_client.get().client.delete("kaizen:test:fork", "kaizen:test:fork:q")
