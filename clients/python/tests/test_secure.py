"""The client's TLS and token options against a node with mutual TLS and tokens.

Runs when LONGMEM_SECURE_ADDRESS is set (PythonClientTest starts such a node and passes its
CA, a client certificate and key, and two tokens with the search and sessions roles)."""

import os
import unittest

import grpc
import numpy as np

from longmem_client import MemoryClient, MemoryServiceError
import node

ADDRESS = os.environ.get("LONGMEM_SECURE_ADDRESS")


@unittest.skipUnless(ADDRESS, "LONGMEM_SECURE_ADDRESS not set")
class SecureNodeTest(unittest.TestCase):
    def client(self, token=None, cert=True):
        kw = dict(tls_ca=os.environ["LONGMEM_TLS_CA"], token=token, timeout=20)
        if cert:
            kw.update(client_cert=os.environ["LONGMEM_CLIENT_CERT"], client_key=os.environ["LONGMEM_CLIENT_KEY"])
        return MemoryClient(ADDRESS, **kw)

    def test_token_and_certificate_are_answered(self):
        with self.client(os.environ["LONGMEM_TOKEN"]) as c:
            names = [x.name for x in c.collections()]
            self.assertIn(node.FLAT, names)
            info = [x for x in c.collections() if x.name == node.FLAT][0]
            q = np.ones((1, info.heads, info.head_dim), dtype=np.float32)
            self.assertEqual((1, info.heads, 3), c.search(node.FLAT, node.LAYER, q, 3).scores.shape)

    def test_no_token_is_unauthenticated(self):
        with self.client(None) as c, self.assertRaises(MemoryServiceError) as e:
            c.collections()
        self.assertEqual(grpc.StatusCode.UNAUTHENTICATED, e.exception.code)

    def test_no_client_certificate_is_refused(self):
        with self.client(os.environ["LONGMEM_TOKEN"], cert=False) as c, self.assertRaises(MemoryServiceError) as e:
            c.collections()
        self.assertEqual(grpc.StatusCode.UNAVAILABLE, e.exception.code)

    def test_another_tokens_session_is_not_found(self):
        with self.client(os.environ["LONGMEM_TOKEN"]) as a, self.client(os.environ["LONGMEM_OTHER_TOKEN"]) as b:
            s = a.create_session([node.LAYER], 2, 4)
            kv = np.ones((1, 2, 4), dtype=np.float32)
            self.assertEqual(1, a.append(s, node.LAYER, kv, kv))
            with self.assertRaises(MemoryServiceError) as e:
                b.append(s, node.LAYER, kv, kv)
            self.assertEqual(grpc.StatusCode.NOT_FOUND, e.exception.code)
            with self.assertRaises(MemoryServiceError) as e:
                b.drop(s)
            self.assertEqual(grpc.StatusCode.NOT_FOUND, e.exception.code)
            self.assertEqual(2, a.append(s, node.LAYER, kv, kv))
            a.drop(s)


if __name__ == "__main__":
    unittest.main()
