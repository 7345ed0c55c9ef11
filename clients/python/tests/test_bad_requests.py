"""Issue 12 from outside: bad requests sent as raw messages, each must get a gRPC status (a
non-OK code from the node, not a dropped connection) and the node must still answer a good search,
the same as before, after each one."""

import random
import unittest

import grpc
import numpy as np

from longmem_client import MemoryServiceError
from longmem_client import wire
from longmem_client.stubs import memory_pb2 as pb
import node

INT_MAX = (1 << 31) - 1
INT_MIN = -(1 << 31)
# what a node that crashed, dropped the connection or hit a bug reports
NOT_A_REFUSAL = {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN,
                 grpc.StatusCode.INTERNAL, grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED}
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND


class BadRequestsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.client = node.client()
        info = {c.name: c for c in cls.client.collections()}[node.FLAT]
        cls.heads, cls.dim = info.heads, info.head_dim
        cls.good_q = np.random.default_rng(12).standard_normal((2, cls.heads, cls.dim)).astype(np.float32)
        cls.good = cls.client.search(node.FLAT, node.LAYER, cls.good_q, 5)
        cls.session = cls.client.create_session([1, node.LAYER], cls.heads, cls.dim)

    @classmethod
    def tearDownClass(cls):
        cls.session.drop()
        cls.client.close()

    # -- helpers -----------------------------------------------------------------------------------

    def still_answers(self, after):
        r = self.client.search(node.FLAT, node.LAYER, self.good_q, 5)
        for field in ("keys", "values", "scores", "positions", "document"):
            np.testing.assert_array_equal(getattr(self.good, field), getattr(r, field),
                                          "after %s the good search answers differently" % after)

    def refused(self, method, request, code=None, what=None):
        """Sends a raw request; it must be refused with a status (``code`` if given), then a good
        search must still answer. Returns the MemoryServiceError."""
        what = what or "%s %s" % (method, str(request)[:200].replace("\n", " "))
        with self.assertRaises(MemoryServiceError, msg=what) as e:
            self.client.call(method, request)
        err = e.exception
        self.assertNotIn(err.code, NOT_A_REFUSAL, "%s: %s" % (what, err))
        if code is not None:
            self.assertEqual(code, err.code, "%s: %s" % (what, err))
        self.assertLess(len(err.details), 4000, what)
        self.still_answers(what)
        return err

    def search(self, collection=node.FLAT, heads=None, queries=2, head_dim=None, k=5, floats=None, **fields):
        heads = self.heads if heads is None else heads
        head_dim = self.dim if head_dim is None else head_dim
        n = heads * queries * head_dim if floats is None else floats
        body = np.random.default_rng(n).standard_normal(max(n, 0)).astype("<f4").tobytes()
        return pb.SearchRequest(collections=[collection], layer=node.LAYER, heads=heads, queries=queries,
                                head_dim=head_dim, query=body, k=k, **fields)

    def assert_no_paths(self, err, sent=""):
        """No server path in the message (the name the request sent may be echoed)."""
        shown = err.details.replace(sent, "<sent>") if sent else err.details
        self.assertIsNone(node.ABSOLUTE_PATH.search(shown), err.details)
        if node.SERVER_ROOT:
            self.assertNotIn(node.SERVER_ROOT, err.details)

    # -- Search ------------------------------------------------------------------------------------

    def test_ef_search_past_the_limit_on_hnsw(self):
        self.refused("Search", self.search(node.HNSW, ef_search=INT_MAX), INVALID)

    def test_an_answer_too_large_is_refused_before_the_search(self):
        err = self.refused("Search", self.search(queries=4096, k=4096), grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertIn("refused before searching", err.details)

    def test_nprobe_huge(self):
        self.refused("Search", self.search(node.IVF, nprobe=INT_MAX), INVALID)
        self.refused("Search", self.search(node.FLAT, nprobe=INT_MAX), INVALID)

    def test_k_zero_or_negative(self):
        for k in (0, -1, INT_MIN):
            self.refused("Search", self.search(k=k), INVALID)

    def test_shape_fields_that_do_not_match_the_query_array(self):
        hd = self.heads * 2 * self.dim
        self.refused("Search", self.search(heads=self.heads - 1, floats=hd), INVALID)
        self.refused("Search", self.search(heads=self.heads + 1, floats=hd), INVALID)
        self.refused("Search", self.search(head_dim=self.dim // 2, floats=hd), INVALID)
        self.refused("Search", self.search(queries=3, floats=hd), INVALID)
        # consistent with the array, not with the collection
        self.refused("Search", self.search(heads=self.heads // 2), INVALID)
        self.refused("Search", self.search(head_dim=self.dim * 2), INVALID)

    def test_truncated_and_odd_length_float_arrays(self):
        full = self.search().query
        for body in (full[:-1], full[:-4], full[:3], full + b"\x00", b""):
            r = self.search()
            r.query = body
            self.refused("Search", r, INVALID, "query of %d bytes" % len(body))

    def test_a_megabyte_collection_name_gets_a_bounded_message(self):
        huge = "x" * (1 << 20)
        err = self.refused("Search", self.search(huge), NOT_FOUND)
        self.assertLess(len(err.details), 1000)
        self.assert_no_paths(err)

    def test_collection_names_that_look_like_paths(self):
        for name in ("../../etc", "/etc/passwd", "books/../../etc", "..", "\x00"):
            err = self.refused("Search", self.search(name), NOT_FOUND)
            self.assert_no_paths(err, name)

    # -- sessions ----------------------------------------------------------------------------------

    def test_create_session_out_of_bounds(self):
        for heads, dim, layers in ((10 ** 6, self.dim, [1]), (self.heads, self.dim, [-5]),
                                   (self.heads, self.dim, [INT_MAX]), (self.heads, self.dim, [1, 1]),
                                   (self.heads, self.dim, [-5, INT_MAX]), (self.heads, 10 ** 6, [1]),
                                   (0, self.dim, [1]), (self.heads, self.dim, [])):
            self.refused("CreateSession", pb.CreateSessionRequest(layers=layers, heads=heads, head_dim=dim), INVALID)

    def append_request(self, session, tokens=4, positions=None, floats=None):
        n = self.heads * tokens * self.dim if floats is None else floats
        body = np.zeros(n, dtype="<f4").tobytes()
        return pb.AppendSessionRequest(session=session, layer=node.LAYER, tokens=tokens, keys=body, values=body,
                                       positions=positions or [])

    def test_append_with_a_negative_position(self):
        self.refused("AppendSession", self.append_request(self.session.id, positions=[0, 1, INT_MIN, 3]), INVALID)
        self.refused("AppendSession", self.append_request(self.session.id, positions=[0, 1]), INVALID)
        self.refused("AppendSession", self.append_request(self.session.id, floats=10), INVALID)
        self.refused("AppendSession", self.append_request(self.session.id, tokens=-1, floats=0), INVALID)

    def test_unknown_session_ids(self):
        for sid in ("no-such-session", "", "x" * (1 << 20)):
            search = self.search()
            search.sessions.append(sid)
            self.assertLess(len(self.refused("Search", search, NOT_FOUND).details), 1000)
            self.refused("AppendSession", self.append_request(sid), NOT_FOUND)
            self.refused("DropSession", pb.DropSessionRequest(session=sid), NOT_FOUND)

    # -- fuzz --------------------------------------------------------------------------------------

    def test_seeded_fuzz_of_search_fields(self):
        rng = random.Random(20260412)
        extremes = [INT_MIN, -65536, -2, -1, 0, 1, 2, 3, 4, 7, 8, 15, 16, 17, 64, 65, 257, 1024, 4096, 4097,
                    1 << 20, INT_MAX - 1, INT_MAX]

        def field(good, p):
            if rng.random() >= p:
                return good
            return rng.choice(extremes) if rng.random() < 0.5 else rng.randint(-20, 200)

        answered = refused = 0
        for i in range(300):
            p = 0.0 if rng.random() < 0.2 else 0.3
            heads, queries, dim = field(self.heads, p / 2), field(rng.randint(1, 6), p), field(self.dim, p / 2)
            k = field(rng.randint(1, 12), p)
            n = heads * queries * dim
            if not 0 <= n <= 1 << 18 or rng.random() < 0.15:
                n = rng.randint(0, 3000)
            body = np.random.default_rng(i).standard_normal(n).astype("<f4")
            if n and rng.random() < 0.05:
                body[rng.randrange(n)] = rng.choice([np.nan, np.inf, -np.inf])
            body = body.tobytes()
            if body and rng.random() < 0.05:
                body = body[:-rng.randint(1, 3)]
            r = pb.SearchRequest(collections=[rng.choice([node.FLAT, node.FLAT, node.HNSW, node.IVF])],
                                 layer=field(node.LAYER, p / 2), heads=heads, queries=queries, head_dim=dim,
                                 query=body, k=k, nprobe=field(0, p / 2), ef_search=field(0, p / 2),
                                 refine=field(0, p / 2), float16_pairs=rng.random() < 0.3)
            if rng.random() < 0.1:
                r.documents.append(rng.choice(["doc-1", "no-such-doc", "../x", "y" * 5000]))
            if rng.random() < 0.05:
                r.sessions.append(rng.choice([self.session.id, "no-such-session"]))
            what = "fuzz request %d: %s" % (i, str(r)[:300].replace("\n", " "))
            try:
                response = self.client.call("Search", r)
            except MemoryServiceError as e:
                self.assertNotIn(e.code, NOT_A_REFUSAL, "%s: %s" % (what, e))
                self.assertLess(len(e.details), 4000, what)
                refused += 1
            else:
                # an answer must be well formed for the shape asked
                wire.decode_heads(response, heads, queries, k, dim, r.float16_pairs)
                answered += 1
            self.still_answers(what)
        print("fuzz: %d answered, %d refused" % (answered, refused))
        self.assertGreater(answered, 20, "the fuzz sent some good requests")
        self.assertGreater(refused, 20, "the fuzz sent some bad requests")


if __name__ == "__main__":
    unittest.main()
