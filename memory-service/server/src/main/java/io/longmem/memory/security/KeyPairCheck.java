package io.longmem.memory.security;

import io.longmem.io.InputException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.PrivateKey;
import java.security.SecureRandom;
import java.security.Signature;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.Base64;

/**
 * Whether tls.private_key belongs to tls.cert_chain's first certificate: gRPC accepts a key of
 * another certificate and every handshake then fails, so the node checks at start (a signature
 * made with the key, verified with the certificate). Keys other than unencrypted PKCS#8 are left
 * to gRPC, which refuses them itself.
 */
final class KeyPairCheck {
  private static final String BEGIN = "-----BEGIN PRIVATE KEY-----";
  private static final String END = "-----END PRIVATE KEY-----";

  private KeyPairCheck() {}

  static void check(Path certChain, Path privateKey) {
    X509Certificate cert;
    String pem;
    try (InputStream in = Files.newInputStream(certChain)) {
      cert = (X509Certificate) CertificateFactory.getInstance("X.509").generateCertificate(in);
      pem = Files.readString(privateKey, StandardCharsets.US_ASCII);
    } catch (IOException | GeneralSecurityException e) {
      throw new InputException("tls.private_key " + privateKey + ": cannot read (" + e.getMessage() + ")");
    }
    int begin = pem.indexOf(BEGIN);
    int end = pem.indexOf(END);
    if (begin < 0 || end < begin) {
      return; // not PKCS#8: gRPC says whether it can use it
    }
    PrivateKey key;
    try {
      byte[] der = Base64.getMimeDecoder().decode(pem.substring(begin + BEGIN.length(), end));
      key = KeyFactory.getInstance(cert.getPublicKey().getAlgorithm()).generatePrivate(new PKCS8EncodedKeySpec(der));
    } catch (IllegalArgumentException | GeneralSecurityException e) {
      throw new InputException("tls.private_key " + privateKey + ": not a " + cert.getPublicKey().getAlgorithm()
          + " key like tls.cert_chain's certificate (" + e.getMessage() + ")");
    }
    String algorithm = "EC".equals(key.getAlgorithm()) ? "SHA256withECDSA"
        : "RSA".equals(key.getAlgorithm()) ? "SHA256withRSA" : null;
    if (algorithm == null) {
      return;
    }
    try {
      byte[] challenge = new byte[32];
      new SecureRandom().nextBytes(challenge);
      Signature sign = Signature.getInstance(algorithm);
      sign.initSign(key);
      sign.update(challenge);
      Signature verify = Signature.getInstance(algorithm);
      verify.initVerify(cert.getPublicKey());
      verify.update(challenge);
      if (!verify.verify(sign.sign())) {
        throw new InputException("tls.private_key " + privateKey + " is not the key of tls.cert_chain " + certChain
            + " (" + cert.getSubjectX500Principal().getName() + ")");
      }
    } catch (GeneralSecurityException e) {
      throw new InputException("tls.private_key " + privateKey + ": unusable with tls.cert_chain " + certChain + " ("
          + e.getMessage() + ")");
    }
  }
}
