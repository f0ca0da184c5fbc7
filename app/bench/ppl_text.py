"""The fixed English text the LLM's perplexity is measured on (written for Doppel, about 1,200 tokens).

Plain conversational prose on everyday topics, like what the replica talks
about.  It is a module rather than a .txt file so the wheel and the frozen
build carry it without package-data rules.  Changing it changes every
perplexity number: compare runs only on the same text (``TEXT_ID``).
"""

TEXT_ID = "doppel-ppl-v1"

TEXT = """\
On Saturday morning the market opens before the sun has cleared the roofs. The first people to arrive are the \
bakers, who carry long wooden trays of bread from their vans to the stalls near the fountain. By seven o'clock the \
square smells of coffee and warm crust, and the fishmonger is already shouting the price of mackerel across the \
cobbles. Most of the customers at that hour are old men with canvas bags and young parents pushing sleepy children \
in prams. They buy what they need quickly and leave before the crowds come.

I like to walk there slowly, without a list. It is easier to notice what is good that week when you have not already \
decided what you want. In early summer the strawberries are small and dark and taste of sugar, and by the end of \
August the tables are covered with tomatoes of every shape: striped ones, yellow ones, and heavy red ones that split \
if you hold them too tightly. The woman who sells them has farmed the same hill for thirty years. When I asked her \
once what the secret was, she laughed and said that there was no secret at all, only patience and a lot of water.

After the market I usually cook something simple. A pan of onions softened in butter, a handful of rice, a little \
stock added a ladle at a time, and twenty minutes later there is a meal that tastes far better than the effort it \
took. Cooking like this is less about following a recipe than about paying attention. You listen to the pan, you \
taste as you go, and you learn to stop before you have done too much. My grandmother cooked that way for her whole \
life, and she never owned a cookbook.

In the afternoon, if the weather holds, I take the train to the coast. The line runs along a river for most of the \
journey, past fields of barley and small villages with stone churches and red telephone boxes that nobody uses any \
more. The carriage is rarely full. Some passengers read, some sleep, and some simply watch the water go by. There is \
something restful about a journey when you are not in a hurry to arrive, when the point is the hour spent looking out \
of the window rather than the place at the end of it.

The beach in autumn is nearly empty. A few dogs chase the waves and then run back in surprise when the water follows \
them. The sand is firm and cold, and the wind carries the smell of salt and seaweed. I walk as far as the old \
lighthouse, which has not been lit for decades but still stands white against the sky. A family of gulls lives on \
the railing at the top. Every time I visit, I tell myself that I will come back more often, and every time I forget \
until the next grey weekend reminds me.

Rain changes a town completely. The streets empty, the cafes fill, and people who would never speak to each other \
on a sunny day suddenly share tables and umbrellas. I once spent a whole wet afternoon in a small bookshop that sells \
second-hand novels, talking with the owner about the stories we had loved as children. He told me that the books \
people sell him say more about a neighbourhood than any survey could. Students sell their textbooks in June, new \
parents give away their novels because they no longer have time to read, and older readers bring in boxes of \
detective stories that they have finished and want someone else to enjoy.

Learning something new as an adult is harder than it was at school, but it is also more satisfying. Last year I \
started to learn the piano. For weeks my hands refused to do two different things at once, and the simplest tune \
sounded like an argument between two strangers. My teacher told me to practise slowly, much more slowly than felt \
reasonable, and to stop as soon as I grew tired. She was right. The progress came not in the long sessions but in \
the short, careful ones, repeated every day. Now I can play a few quiet pieces from beginning to end, and on a good \
evening they even sound like music.

Sleep is another thing that rewards small habits. I used to stay up late with a screen in my hand and then wonder \
why I woke up tired. These days I try to go to bed at the same time each night, keep the bedroom cool and dark, and \
put the phone in another room. On nights when my mind will not settle, I write down the things I am worried about \
on a scrap of paper. It sounds too simple to work, but once the worries are on the page they seem smaller, and \
usually I am asleep within a few minutes.

Friends matter more than any of these routines. A good friend is someone you can call on a bad day without \
explaining why, someone who remembers the name of your cat and asks how your mother is doing. We do not see each \
other as often as we would like, because everyone is busy and the years go by faster than they used to. But when we \
do meet, over a long lunch or a walk in the park, the conversation picks up exactly where we left it, as if no time \
had passed at all.

In the evening the town grows quiet again. Lights come on in the windows, someone practises a trumpet a few streets \
away, and the smell of dinner drifts out of open kitchen doors. I sit on the step with a cup of tea and watch the \
swifts circle the church tower until it is too dark to see them. Tomorrow there will be work, and emails, and all the \
ordinary business of the week. For now, though, there is only the cooling air, the last of the light, and the \
pleasant tiredness of a day spent doing very little, very well.
"""
