"""The wrapper against a real node: layouts, sessions, errors. Answers also go to LONGMEM_OUT,
where the Java side compares them with the same searches through its own client and brute force."""

import json
import os
import unittest

import grpc
import numpy as np

from longmem_client import MemoryServiceError, Session
import node


def dump(name, queries, result, **extra):
    d = node.out_dir(name)
    if d is None:
        return
    np.save(os.path.join(d, "queries.npy"), np.asarray(queries, dtype="<f4"))
    np.save(os.path.join(d, "keys.npy"), result.keys.astype("<f4"))
    np.save(os.path.join(d, "values.npy"), result.values.astype("<f4"))
    np.save(os.path.join(d, "scores.npy"), result.scores.astype("<f4"))
    np.save(os.path.join(d, "positions.npy"), result.positions.astype("<i4"))
    ids = [[[result.document_id(q, h, j) for j in range(result.scores.shape[2])]
            for h in range(result.scores.shape[1])] for q in range(result.scores.shape[0])]
    with open(os.path.join(d, "documents.json"), "w") as f:
        json.dump(dict(documents=ids, **extra), f)


class ClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.client = node.client()
        cls.info = {c.name: c for c in cls.client.collections()}
        cls.heads = cls.info[node.FLAT].heads
        cls.dim = cls.info[node.FLAT].head_dim

    @classmethod
    def tearDownClass(cls):
        cls.client.close()

    def queries(self, n, seed):
        return np.random.default_rng(seed).standard_normal((n, self.heads, self.dim)).astype(np.float32)

    def assert_exact_scores(self, q, r):
        """Each score is q.k of the key returned with it, best first."""
        self.assertTrue(r.valid.all())
        expect = np.einsum("qhd,qhkd->qhk", q.astype(np.float64), r.keys.astype(np.float64))
        np.testing.assert_allclose(r.scores, expect, rtol=1e-4, atol=1e-4)
        self.assertTrue((np.diff(r.scores, axis=2) <= 1e-6).all(), "scores best first")

    def test_collections(self):
        d = node.out_dir("collections")
        if d is not None:
            with open(os.path.join(d, "collections.json"), "w") as f:
                json.dump([c.__dict__ for c in self.info.values()], f)
        self.assertLessEqual({node.FLAT, node.HNSW, node.IVF}, set(self.info))
        for c in self.info.values():
            self.assertIn(node.LAYER, c.layers)
            self.assertEqual((self.heads, self.dim), (c.heads, c.head_dim))

    def test_flat_search(self):
        q = self.queries(3, 1)
        r = self.client.search(node.FLAT, node.LAYER, q, 10)
        self.assertEqual((3, self.heads, 10, self.dim), r.keys.shape)
        self.assertEqual((3, self.heads, 10, self.dim), r.values.shape)
        self.assertEqual((3, self.heads, 10), r.scores.shape)
        self.assertEqual(np.float32, r.keys.dtype)
        self.assert_exact_scores(q, r)
        self.assertLessEqual({r.document_id(0, 0, j) for j in range(10)}, set(self.info[node.FLAT].documents))
        dump("flat", q, r, collection=node.FLAT, k=10)

    def test_approximate_indexes(self):
        q = self.queries(2, 2)
        hnsw = self.client.search(node.HNSW, node.LAYER, q, 8, ef_search=64)
        self.assert_exact_scores(q, hnsw)
        dump("hnsw", q, hnsw, collection=node.HNSW, k=8, ef_search=64)
        ivf = self.client.search(node.IVF, node.LAYER, q, 8, nprobe=4)
        self.assert_exact_scores(q, ivf)
        dump("ivf", q, ivf, collection=node.IVF, k=8, nprobe=4)

    def test_float16_pairs_are_the_float32_pairs_rounded(self):
        q = self.queries(2, 3)
        full = self.client.search(node.FLAT, node.LAYER, q, 6)
        half = self.client.search(node.FLAT, node.LAYER, q, 6, float16_pairs=True)
        self.assertEqual(np.float16, half.keys.dtype)
        np.testing.assert_array_equal(full.positions, half.positions)
        np.testing.assert_array_equal(full.keys.astype(np.float16), half.keys)
        np.testing.assert_array_equal(full.values.astype(np.float16), half.values)

    def test_documents_restrict_the_search(self):
        doc = self.info[node.FLAT].documents[-1]
        r = self.client.search(node.FLAT, node.LAYER, self.queries(2, 4), 5, documents=[doc])
        self.assertEqual({doc}, {r.document_id(q, h, j) for q in range(2) for h in range(self.heads)
                                 for j in range(5)})

    def test_session_answers_what_was_appended(self):
        rng = np.random.default_rng(5)
        n = 50
        keys = rng.standard_normal((n, self.heads, self.dim)).astype(np.float32)
        values = rng.standard_normal((n, self.heads, self.dim)).astype(np.float32)
        more = rng.standard_normal((30, self.heads, self.dim)).astype(np.float32)
        positions = np.arange(1000, 1000 + n)
        with self.client.create_session([1, node.LAYER], self.heads, self.dim) as s:
            self.assertIsInstance(s, Session)
            self.assertEqual(n, s.append(node.LAYER, keys, values, positions))
            self.assertEqual(30, s.append(1, more, more))  # another layer: counted apart
            q = self.queries(2, 6)
            k = 5
            r = self.client.search(None, node.LAYER, q, k, sessions=[s])
            for qi in range(2):
                for h in range(self.heads):
                    truth = keys[:, h, :].astype(np.float64) @ q[qi, h].astype(np.float64)
                    best = np.argsort(-truth, kind="stable")[:k]
                    np.testing.assert_array_equal(1000 + best, r.positions[qi, h])
                    np.testing.assert_array_equal(keys[best, h], r.keys[qi, h])
                    np.testing.assert_array_equal(values[best, h], r.values[qi, h])
                    np.testing.assert_allclose(truth[best], r.scores[qi, h], rtol=1e-5, atol=1e-5)
                    self.assertEqual({s.id}, {r.document_id(qi, h, j) for j in range(k)})
            # with a collection: the exact top-k of both answers together
            both = self.client.search(node.FLAT, node.LAYER, q, k, sessions=s)
            books = self.client.search(node.FLAT, node.LAYER, q, k)
            merged = np.sort(np.concatenate([books.scores, r.scores], axis=2), axis=2)[:, :, ::-1][:, :, :k]
            np.testing.assert_allclose(merged, both.scores, rtol=1e-6)
        with self.assertRaises(MemoryServiceError) as e:
            self.client.search(None, node.LAYER, q, k, sessions=[s])
        self.assertEqual(grpc.StatusCode.NOT_FOUND, e.exception.code)

    def test_session_pairs_fewer_than_k_are_marked(self):
        keys = np.ones((3, self.heads, self.dim), dtype=np.float32)
        with self.client.create_session([node.LAYER], self.heads, self.dim) as s:
            s.append(node.LAYER, keys, 2 * keys)
            r = self.client.search([], node.LAYER, self.queries(1, 7), 5, sessions=s)
        self.assertEqual([True] * 3 + [False] * 2, r.valid[0, 0].tolist())
        self.assertTrue(np.isneginf(r.scores[0, :, 3:]).all())
        self.assertTrue((r.positions[0, :, 3:] == -1).all())
        np.testing.assert_array_equal(2 * keys[:, 0], r.values[0, 0, :3])
        self.assertIsNone(r.document_id(0, 0, 4))

    def test_refusals_are_errors_with_their_status(self):
        with self.assertRaises(MemoryServiceError) as e:
            self.client.search("no-such-collection", node.LAYER, self.queries(1, 8), 3)
        self.assertEqual(grpc.StatusCode.NOT_FOUND, e.exception.code)
        self.assertIn("no-such-collection", e.exception.details)
        self.assertEqual("Search", e.exception.method)
        with self.assertRaises(MemoryServiceError) as e:
            self.client.search(node.FLAT, node.LAYER, self.queries(1, 8)[:, :, :8], 3)
        self.assertEqual(grpc.StatusCode.INVALID_ARGUMENT, e.exception.code)

    def test_wrapper_refuses_what_it_cannot_shape(self):
        with self.assertRaises(ValueError):
            self.client.search(node.FLAT, node.LAYER, np.zeros((self.heads, self.dim), np.float32), 3)
        with self.assertRaises(ValueError):
            self.client.search(node.FLAT, node.LAYER, np.array([[["a"]]]), 3)
        with self.assertRaises(ValueError):
            self.client.append("x", node.LAYER, np.zeros((2, 1, 1)), np.zeros((3, 1, 1)))
        with self.assertRaises(ValueError):
            self.client.append("x", node.LAYER, np.zeros((2, 1, 1)), np.zeros((2, 1, 1)), positions=[0, 1 << 31])
        from longmem_client import MemoryClient
        for bad in ("localhost", "grpc://host:", "host:99999", ":7070"):
            with self.assertRaises(ValueError, msg=bad):
                MemoryClient(bad)
        with self.assertRaises(ValueError):
            MemoryClient("127.0.0.1:1", client_cert=b"x")
        with self.assertRaises(ValueError):
            MemoryClient("127.0.0.1:1", token="a\nb")

    def test_a_closed_client_refuses_calls(self):
        with node.client() as c:
            self.assertTrue(c.collections())
        with self.assertRaises(ValueError):
            c.collections()

    def test_grpc_url_form_of_the_address(self):
        with node.client() as c:
            pass
        from longmem_client import MemoryClient
        with MemoryClient("grpc://" + node.ADDRESS) as c:
            self.assertEqual(set(self.info), {x.name for x in c.collections()})


if __name__ == "__main__":
    unittest.main()
