"""The words and sentence templates operator requests are made of, each split in two.

``train`` words and templates make the training requests (and are all the regex baseline's author
gets to see); ``heldout`` ones appear only in the held-out test split, so that split measures
whether a reader generalises to new verbs, nouns, unit spellings, endpoint kinds and sentence
shapes. Templates are ``str.format`` strings over the slots ``{verb}``, ``{conn}``, ``{route}``,
``{bw}`` (a figure with its unit), ``{bwp}`` (a bandwidth phrase) and ``{extras}`` (the optional
fields' clauses, with their leading separator).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Split:
    train: tuple[str, ...]
    heldout: tuple[str, ...]

    def pick(self, heldout: bool) -> tuple[str, ...]:
        return self.heldout if heldout else self.train


CREATE_VERBS = Split(("build", "set up", "create", "provision", "establish", "configure", "add"),
                     ("spin up", "deploy", "stand up", "open"))
MODIFY_VERBS = Split(("increase", "raise", "change", "modify", "update", "upgrade", "reduce"),
                     ("bump", "boost", "adjust", "scale"))
DELETE_VERBS = Split(("delete", "remove", "tear down", "terminate", "release", "cancel"),
                     ("decommission", "shut down", "drop", "retire"))
CONNECTIONS = Split(("connection", "link", "path", "circuit", "tunnel", "service"),
                    ("pipe", "lightpath", "channel", "VPN"))

# endpoint kinds: {n} a number, {city} a city
ENDPOINT_KINDS = Split(("Access {n}", "Cloud {n}", "Core Router {n}", "Metro-{n}", "DC {city}", "Edge {n}",
                        "Aggregation {n}", "RAN Site {n}", "gNB-{n}", "Data Center {city}", "PE{n}",
                        "Branch {city}"),
                       ("Gateway {n}", "PoP {city}", "Hub-{n}", "Campus {city}"))
CITIES = Split(("Frankfurt", "Berlin", "Paris", "Madrid", "Lisbon", "Vienna", "Zurich", "Milan", "Oslo",
                "Dublin", "Prague", "Warsaw", "Munich", "Lyon", "Porto", "Hamburg", "Rome", "Athens",
                "Helsinki", "Brussels", "Seville", "Krakow", "Turin", "Bergen"),
               ("Amsterdam", "Stockholm", "Copenhagen", "Budapest", "Valencia", "Geneva", "Leeds", "Bologna"))

ROUTES = Split(("from {s} to {d}", "between {s} and {d}", "{s} to {d}", "{s} -> {d}", "to {d} from {s}",
                "linking {s} to {d}", "from {s} towards {d}"),
               ("with {s} as source and {d} as destination", "originating at {s} and terminating at {d}",
                "{s} \u2192 {d}", "for {s} to reach {d}"))
ROUTES_SOURCE_ONLY = Split(("from {s}", "starting at {s}"), ("out of {s}",))
ROUTES_DESTINATION_ONLY = Split(("to {d}", "towards {d}"), ("reaching {d}",))

# bandwidth: {v} the figure
GBPS = Split(("{v} Gbit/s", "{v} Gbps", "{v} gigabits per second", "{v}G", "{v} G", "{v}Gbps"),
             ("{v} Gb/s", "{v} gigabit/s", "{v} Gbits/s", "{v} gig"))
MBPS = Split(("{v} Mbit/s", "{v} Mbps", "{v} megabits per second", "{v}M", "{v}Mbps"),
             ("{v} Mb/s", "{v} megabit/s", "{v} Mbits/s", "{v} meg"))
GBPS_VALUES = ("1", "2", "2.5", "4", "5", "10", "20", "25", "40", "50", "100")
MBPS_VALUES = ("10", "20", "50", "100", "150", "200", "250", "300", "400", "500", "750", "800")
BANDWIDTH_PHRASES = Split(("with {bw}", "at {bw}", "of {bw}", "with {bw} of bandwidth", "with a bandwidth of {bw}",
                           "with a capacity of {bw}", "bandwidth {bw}"),
                          ("sized for {bw}", "carrying {bw}", "with {bw} throughput"))

LATENCY_UNITS = Split(("{v} ms", "{v}ms", "{v} milliseconds"), ("{v} msec", "{v} millis"))
LATENCY_VALUES = ("1", "2", "3", "5", "8", "10", "15", "20", "30", "50", "100")
LATENCY_PHRASES = Split(("with latency below {lat}", "latency under {lat}", "with a max latency of {lat}",
                         "with a latency of at most {lat}", "delay under {lat}", "with a latency bound of {lat}",
                         "keeping latency below {lat}"),
                        ("with no more than {lat} of delay", "round-trip time within {lat}",
                         "latency must not exceed {lat}"))

PROTECTION_PHRASES = Split(("with traffic protection", "with 1+1 protection", "with a redundant path",
                            "with redundancy", "with failover", "and make it protected", "protected"),
                           ("with a backup path", "made resilient", "with path diversity",
                            "with protection switching"))

SLICE_NAMES = {
    "embb": Split(("eMBB", "broadband", "enhanced mobile broadband"), ("mobile broadband", "MBB")),
    "urllc": Split(("URLLC", "low-latency", "ultra-reliable low-latency"), ("ultra-reliable", "critical")),
    "miot": Split(("mIoT", "IoT", "massive IoT"), ("mMTC", "sensor")),
}
SLICE_PHRASES = Split(("on the {name} slice", "in the {name} slice", "using the {name} slice", "slice {name}"),
                      ("mapped to the {name} slice", "as part of slice {name}"))

FIVE_QI_VALUES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 65, 66, 67, 69, 70, 75, 79, 80, 82, 83, 84, 85)
FIVE_QI_PHRASES = Split(("5QI {q}", "with 5QI {q}", "QoS identifier {q}", "5QI={q}", "with QoS class {q}"),
                        ("5QI value {q}", "using 5G QoS identifier {q}"))

# time windows: {s} {e} are rendered by the generator as 24-hour or am/pm times
TIME_PHRASES = Split(("between {s} and {e}", "from {s} to {e}", "during {s}-{e}", "each day from {s} until {e}",
                      "only {s}-{e}"),
                     ("starting {s}, ending {e}", "in the window {s}\u2013{e}"))
CLOCK_STYLES = Split(("24h", "ampm"), ("24h", "h"))  # h: "22h"

PREFIXES = Split(("", "", "", "Hi team, ", "Hello, ", "Ticket #{n}: ", "Urgent: ", "As discussed, ", "Ref CHG-{n}: "),
                 ("", "Good morning, ", "Per change request {n}, "))
VERB_PREFIXES = Split(("Please ", "Can you please ", "Could you ", "Hi team, please "),
                      ("Kindly ", "Would you mind to "))  # only before a request that starts with its verb
SUFFIXES = Split(("", "", "", ", thanks", ". Thank you!", " asap", " for customer {n}", " (ticket {n})",
                  " for project {n}", " before the event on floor {n}"),
                 ("", ", cheers", " - order no. {n}", " for tenant {n}"))

CREATE_TEMPLATES = Split(("{verb} a {bw} {conn} {route}{extras}", "{verb} a {conn} {route} {bwp}{extras}",
                          "{route}: {verb} a {bw} {conn}{extras}", "I need a {conn} {route} {bwp}{extras}",
                          "{verb} {bw} {route}{extras}", "we want a {bw} {conn} {route}{extras}",
                          "{verb} a new {conn}, {route}, {bwp}{extras}"),
                         ("{route} needs a {bw} {conn}{extras}", "requesting {bw} {route}{extras}",
                          "{verb} the following {conn}: {route}, {bwp}{extras}",
                          "could we get a {conn} {route} {bwp}{extras}?"))
MODIFY_TEMPLATES = Split(("{verb} the bandwidth of the {conn} {route} to {bw}{extras}",
                          "{verb} the {conn} {route} to {bw}{extras}",
                          "for the {conn} {route}, {verb} the bandwidth to {bw}{extras}"),
                         ("{verb} capacity on the {conn} {route} to {bw}{extras}",
                          "{route} {conn}: please {verb} it to {bw}{extras}"))
MODIFY_NO_BANDWIDTH = Split(("{verb} the {conn} {route}{extras}", "for the {conn} {route}: {verb} it{extras}"),
                            ("on the {conn} {route}, {verb} the settings{extras}",))
DELETE_TEMPLATES = Split(("{verb} the {conn} {route}{extras}", "{route}: {verb} the {conn}{extras}",
                          "{verb} {conn} {route}{extras}"),
                         ("the {conn} {route} is no longer needed, {verb} it{extras}",
                          "{verb} whatever {conn} runs {route}{extras}"))

# texts that state no network request: the reader must ask, not guess
OFF_TOPIC = Split((
    "What is the weather like in the city tomorrow?",
    "Find a quiet coffee shop near the train station with free wifi.",
    "The museum opens at nine in the morning and closes at six in the evening.",
    "Who won the football match last night?",
    "Recommend a family restaurant close to the harbour that is open late.",
    "Send the quarterly report to the finance team by Friday.",
    "My laptop battery drains very fast, any advice?",
    "Book a meeting room for twelve people on Tuesday.",
    "Wie spät ist es in Berlin?",
    "Bitte schicken Sie mir die Rechnung.",
    "Où est la gare la plus proche ?",
    "¿Dónde está el aeropuerto?",
    "Il treno parte alle otto.",
    "hello",
    "thanks a lot",
    "test test test",
), (
    "Can you recommend a good book about gardening?",
    "The cat sat on the warm windowsill all afternoon.",
    "Ich möchte eine Pizza bestellen.",
    "Quel temps fera-t-il demain ?",
    "东京到大阪的火车几点出发?",
    "lorem ipsum dolor sit amet",
))
