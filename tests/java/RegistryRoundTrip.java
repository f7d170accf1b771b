// The Java side of the registry-framing round trip (tests/integration/test_java_registry.py).
// Writes an agent event as a schema registry's Java clients do (magic byte 0, the schema id
// as 4 big-endian bytes, the Avro binary body by Apache Avro's Java library), with the id
// from the registry's REST API; reads the tower's registry-framed audit back the same way.
//
//   produce BOOTSTRAP TOPIC REGISTRY_URL SCHEMA_FILE CUSTOMER EVENT_ID TRACEPARENT
//   read-audit BOOTSTRAP TOPIC REGISTRY_URL EVENT_ID TIMEOUT_S
// Each prints one JSON object on stdout.

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.ByteArrayOutputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class RegistryRoundTrip {
  static final ObjectMapper JSON = new ObjectMapper();
  static final HttpClient HTTP = HttpClient.newHttpClient();
  static final String CONTENT_TYPE = "application/vnd.schemaregistry.v1+json";

  public static void main(String[] a) throws Exception {
    switch (a[0]) {
      case "produce" -> produce(a[1], a[2], a[3], a[4], a[5], a[6], a[7]);
      case "read-audit" -> readAudit(a[1], a[2], a[3], a[4], Integer.parseInt(a[5]));
      default -> throw new IllegalArgumentException("unknown command " + a[0]);
    }
  }

  static JsonNode registry(String url, String body) throws Exception {
    HttpRequest.Builder req =
        HttpRequest.newBuilder(URI.create(url))
            .header("Accept", CONTENT_TYPE)
            .header("Content-Type", CONTENT_TYPE);
    req = body == null ? req.GET() : req.POST(HttpRequest.BodyPublishers.ofString(body));
    HttpResponse<String> resp = HTTP.send(req.build(), HttpResponse.BodyHandlers.ofString());
    if (resp.statusCode() != 200) {
      throw new IllegalStateException(url + " answered " + resp.statusCode() + ": " + resp.body());
    }
    return JSON.readTree(resp.body());
  }

  static void produce(
      String bootstrap, String topic, String registryUrl, String schemaFile, String customer,
      String eventId, String traceparent) throws Exception {
    String text = Files.readString(Path.of(schemaFile));
    String body = JSON.writeValueAsString(Map.of("schema", text));
    int id = registry(registryUrl + "/subjects/" + topic + "-value/versions", body).get("id").asInt();

    Schema schema = new Schema.Parser().parse(text);
    Schema proposalSchema = schema.getField("proposal").schema().getTypes().get(1);
    GenericRecord proposal = new GenericData.Record(proposalSchema);
    proposal.put("action", "message");
    proposal.put("category", "service");
    proposal.put("priority", 60);
    proposal.put("content", "Your parcel ships today");
    proposal.put("asserts", new HashMap<String, String>());
    proposal.put("ai_generated", false);
    GenericRecord event = new GenericData.Record(schema);
    event.put("event_id", eventId);
    event.put("customer_id", customer);
    event.put("occurred_at", System.currentTimeMillis());
    event.put("kind", "proposal");
    event.put("agent", "java-bot");
    event.put("department", "service");
    event.put("channel", "email");
    event.put("proposal", proposal);

    ByteArrayOutputStream out = new ByteArrayOutputStream();
    out.write(0); // the registry framing's magic byte
    out.write(ByteBuffer.allocate(4).putInt(id).array()); // the schema id, big-endian
    BinaryEncoder encoder = EncoderFactory.get().binaryEncoder(out, null);
    new GenericDatumWriter<GenericRecord>(schema).write(event, encoder);
    encoder.flush();

    Properties p = new Properties();
    p.put("bootstrap.servers", bootstrap);
    p.put("acks", "all");
    p.put("key.serializer", StringSerializer.class.getName());
    p.put("value.serializer", ByteArraySerializer.class.getName());
    try (KafkaProducer<String, byte[]> producer = new KafkaProducer<>(p)) {
      ProducerRecord<String, byte[]> rec = new ProducerRecord<>(topic, customer, out.toByteArray());
      rec.headers().add("traceparent", traceparent.getBytes(StandardCharsets.US_ASCII));
      producer.send(rec).get();
    }
    System.out.println(JSON.writeValueAsString(Map.of("schema_id", id, "bytes", out.size())));
  }

  static void readAudit(String bootstrap, String topic, String registryUrl, String eventId, int timeoutS)
      throws Exception {
    Properties p = new Properties();
    p.put("bootstrap.servers", bootstrap);
    p.put("group.id", "java-audit-reader-" + UUID.randomUUID());
    p.put("auto.offset.reset", "earliest");
    p.put("isolation.level", "read_committed");
    p.put("key.deserializer", ByteArrayDeserializer.class.getName());
    p.put("value.deserializer", ByteArrayDeserializer.class.getName());
    Map<Integer, Schema> schemas = new HashMap<>();
    long deadline = System.currentTimeMillis() + timeoutS * 1000L;
    try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(p)) {
      consumer.subscribe(List.of(topic));
      while (System.currentTimeMillis() < deadline) {
        for (ConsumerRecord<byte[], byte[]> rec : consumer.poll(Duration.ofMillis(500))) {
          byte[] v = rec.value();
          if (v == null || v.length < 5 || v[0] != 0) {
            throw new IllegalStateException("not registry-framed: offset " + rec.offset());
          }
          int id = ByteBuffer.wrap(v, 1, 4).getInt();
          Schema schema = schemas.get(id);
          if (schema == null) {
            String text = registry(registryUrl + "/schemas/ids/" + id, null).get("schema").asText();
            schema = new Schema.Parser().parse(text);
            schemas.put(id, schema);
          }
          BinaryDecoder decoder = DecoderFactory.get().binaryDecoder(v, 5, v.length - 5, null);
          GenericRecord audit = new GenericDatumReader<GenericRecord>(schema).read(null, decoder);
          if (!eventId.equals(String.valueOf(audit.get("event_id")))) {
            continue;
          }
          Header trace = rec.headers().lastHeader("traceparent");
          Map<String, Object> got = new LinkedHashMap<>();
          got.put("schema_id", id);
          got.put("schema_name", schema.getFullName());
          got.put("event_id", String.valueOf(audit.get("event_id")));
          got.put("agent", String.valueOf(audit.get("agent")));
          got.put("outcome", String.valueOf(audit.get("outcome")));
          got.put("traceparent", trace == null ? null : new String(trace.value(), StandardCharsets.US_ASCII));
          System.out.println(JSON.writeValueAsString(got));
          return;
        }
      }
    }
    System.err.println("no audit record for " + eventId + " within " + timeoutS + " s");
    System.exit(1);
  }
}
