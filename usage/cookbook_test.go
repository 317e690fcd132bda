package usage

import (
	"testing"

	"github.com/sluice-gateway/sluice"
)

// The examples of OpenAI's "How to count tokens with tiktoken" cookbook,
// with the prompt_tokens the API reported for them.
const cookbookMessages = `{"model":"x","messages":[
 {"role":"system","content":"You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
 {"role":"system","name":"example_user","content":"New synergies will help drive top-line growth."},
 {"role":"system","name":"example_assistant","content":"Things working well together will increase revenue."},
 {"role":"system","name":"example_user","content":"Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
 {"role":"system","name":"example_assistant","content":"Let's talk later when we're less busy about how to do better."},
 {"role":"user","content":"This late pivot means we don't have time to boil the ocean for the client deliverable."}
]}`

const cookbookTools = `{"model":"x","tools":[{"type":"function","function":{
  "name":"get_current_weather","description":"Get the current weather in a given location",
  "parameters":{"type":"object","properties":{
    "location":{"type":"string","description":"The city and state, e.g. San Francisco, CA"},
    "unit":{"type":"string","description":"The unit of temperature to return","enum":["celsius","fahrenheit"]}},
  "required":["location"]}}}],
 "messages":[
  {"role":"system","content":"You are a helpful assistant that can answer to questions about the weather."},
  {"role":"user","content":"What's the weather like in San Francisco?"}]}`

func TestPromptTokensCookbook(t *testing.T) {
	var c Counter
	for _, tt := range []struct {
		model string
		body  string
		want  int64
	}{
		{"gpt-3.5-turbo", cookbookMessages, 129},
		{"gpt-4-0613", cookbookMessages, 129},
		{"gpt-4", cookbookMessages, 129},
		{"gpt-4o", cookbookMessages, 124},
		{"gpt-4o-mini", cookbookMessages, 124},
		{"gpt-3.5-turbo", cookbookTools, 105},
		{"gpt-4", cookbookTools, 105},
		{"gpt-4o", cookbookTools, 101},
		{"gpt-4o-mini", cookbookTools, 101},
	} {
		got, err := c.PromptTokens(sluice.APIChat, tt.model, []byte(tt.body))
		if err != nil || got != tt.want {
			t.Errorf("%s: PromptTokens = %d, %v; OpenAI reported %d", tt.model, got, err, tt.want)
		}
	}
}

func TestCountCookbook(t *testing.T) {
	var c Counter
	for _, tt := range []struct {
		model, text string
		want        int
	}{
		{"gpt-4", "tiktoken is great!", 6},
		{"gpt-4", "antidisestablishmentarianism", 6},
		{"gpt-4", "2 + 2 = 4", 7},
		{"gpt-4", "お誕生日おめでとう", 9},
		{"gpt-4o", "お誕生日おめでとう", 8},
		{"gpt-4", "", 0},
	} {
		if got := c.Count(tt.model, tt.text); got != tt.want {
			t.Errorf("Count(%q, %q) = %d, want %d", tt.model, tt.text, got, tt.want)
		}
	}
}
